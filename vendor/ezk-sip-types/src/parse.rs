//! Parsing utilities for SIP message components

use std::str::FromStr;

use bytes::Bytes;
use bytesstr::BytesStr;
use internal::IResult;
use nom::Finish;
use nom::branch::alt;
use nom::bytes::complete::is_not;
use nom::character::complete::{anychar, char};
use nom::combinator::recognize;
use nom::error::{VerboseError, VerboseErrorKind};
use nom::multi::many0_count;
use nom::sequence::{delimited, pair};

// PATCH(milliwatt): a quoted-string is `DQUOTE *(qdtext / quoted-pair) DQUOTE` (RFC 3261
// 25.1): a backslash escapes any character (an escaped quote too) and the string may be empty.
// 0.6.5's `escaped(is_not("\""), ..)` let the backslash into the normal text, so an escaped
// quote ended the string, and it refused `""`.
pub(crate) fn parse_quoted(i: &str) -> IResult<&str, &str> {
    delimited(
        char('"'),
        recognize(many0_count(alt((
            is_not("\"\\"),
            recognize(pair(char('\\'), anychar)),
        )))),
        char('"'),
    )(i)
}

pub(crate) fn whitespace(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

#[rustfmt::skip]
pub(crate) fn token(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '.' | '!' | '%' | '*' | '_' | '`' | '\'' | '~' | '+')
}

/// Parsable type using nom
pub trait Parse: Sized + FromStr {
    /// Create a parser which references the given buffer
    fn parse(src: &Bytes) -> impl Fn(&str) -> IResult<&str, Self> + '_;

    /// Parse from str
    fn parse_str(i: &str) -> Result<Self, VerboseError<String>> {
        let src = BytesStr::from(i);

        let (remaining, parsed) = Self::parse(src.as_ref())(&src)
            .finish()
            .map_err(internal::verbose_error_to_owned)?;

        if remaining.is_empty() {
            Ok(parsed)
        } else {
            Err(VerboseError {
                errors: vec![(
                    remaining.into(),
                    VerboseErrorKind::Context("Input was not completely consumed"),
                )],
            })
        }
    }
}

macro_rules! impl_from_str {
    ($ty:ty) => {
        impl std::str::FromStr for $ty {
            type Err = $crate::_private_reexport::nom::error::VerboseError<String>;

            fn from_str(i: &str) -> Result<Self, Self::Err> {
                <Self as Parse>::parse_str(i)
            }
        }
    };
}

// PATCH(milliwatt)
#[cfg(test)]
mod quoted_test {
    use super::parse_quoted;

    #[test]
    fn quoted_pairs_and_empty_strings() {
        assert_eq!(parse_quoted(r#""a \"b\" c" <"#), Ok((" <", r#"a \"b\" c"#)));
        assert_eq!(parse_quoted(r#""back\\slash"x"#), Ok(("x", r#"back\\slash"#)));
        assert_eq!(parse_quoted(r#""""#), Ok(("", "")));
        assert!(parse_quoted(r#""unterminated \""#).is_err());
        assert!(parse_quoted(r#""ends in a backslash\"#).is_err());
    }
}
