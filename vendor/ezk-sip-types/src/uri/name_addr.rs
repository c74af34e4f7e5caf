use super::sip::SipUri;
use crate::host::{Host, HostPort};
use crate::parse::{Parse, parse_quoted, whitespace};
use crate::print::{AppendCtx, Print, PrintCtx};
use bytes::Bytes;
use bytesstr::BytesStr;
use internal::IResult;
use nom::branch::alt;
use nom::bytes::complete::{tag, take_while, take_while1};
use nom::character::complete::satisfy;
use nom::combinator::{map, opt, recognize, verify};
use nom::sequence::{delimited, tuple};
use std::fmt;

/// Represents an URI with a display name or just a URI
/// `(token|"display") <URI> | URI`
/// Used in From / To Headers
#[derive(Clone, Debug)]
pub struct NameAddr {
    pub name: Option<BytesStr>,
    pub uri: SipUri,
    /// PATCH(milliwatt): a From or To header may hold any absoluteURI (RFC 3261 20.20, 20.39:
    /// `addr-spec = SIP-URI / SIPS-URI / absoluteURI`), e.g. `tel:+15551234567` or
    /// `urn:service:sos`. Such a URI is kept here as received and printed instead of `uri`,
    /// which then holds the placeholder `sip:invalid` (RFC 2606) and must not be used to
    /// route. Only From and To accept one; it is `None` everywhere else.
    pub absolute: Option<BytesStr>,
}

impl NameAddr {
    #[inline]
    pub fn new<N>(name: N, uri: SipUri) -> Self
    where
        N: Into<BytesStr>,
    {
        Self {
            name: Some(name.into()),
            uri,
            absolute: None,
        }
    }

    #[inline]
    pub fn uri(uri: SipUri) -> Self {
        Self {
            name: None,
            uri,
            absolute: None,
        }
    }

    /// PATCH(milliwatt): the name-addr or addr-spec of a From or To header: a SIP or SIPS URI
    /// as `parse_no_params` reads it, or else any other absoluteURI (see `absolute`). A URI
    /// whose scheme is sip or sips must parse as one.
    pub(crate) fn parse_from_to(src: &Bytes) -> impl Fn(&str) -> IResult<&str, Self> + '_ {
        move |i| {
            if let Ok(parsed) = Self::parse_no_params(src)(i) {
                return Ok(parsed);
            }
            map(
                alt((
                    tuple((
                        opt(alt((parse_quoted, take_while1(display)))),
                        take_while(whitespace),
                        delimited(tag("<"), absolute_uri(false), tag(">")),
                    )),
                    // Without angle brackets a URI cannot hold `;`, `,` or `?` (20.10)
                    map(absolute_uri(true), |uri| (None, "", uri)),
                )),
                move |(name, _, absolute)| Self {
                    name: name.map(|name| BytesStr::from_parse(src, name.trim())),
                    uri: SipUri::new(HostPort {
                        host: Host::Name(BytesStr::from_static("invalid")),
                        port: None,
                    }),
                    absolute: Some(BytesStr::from_parse(src, absolute)),
                },
            )(i)
        }
    }

    pub(crate) fn parse_no_params(src: &Bytes) -> impl Fn(&str) -> IResult<&str, Self> + '_ {
        move |i| {
            map(
                alt((
                    tuple((
                        opt(alt((parse_quoted, take_while1(display)))),
                        take_while(whitespace),
                        delimited(tag("<"), SipUri::parse(src), tag(">")),
                    )),
                    map(SipUri::parse_no_params(src), |uri| (None, "", uri)),
                )),
                move |(name, _, uri)| Self {
                    name: name.map(|name| BytesStr::from_parse(src, name.trim())),
                    uri,
                    absolute: None,
                },
            )(i)
        }
    }
}

impl Parse for NameAddr {
    fn parse(src: &Bytes) -> impl Fn(&str) -> IResult<&str, Self> + '_ {
        move |i| {
            map(
                alt((
                    tuple((
                        opt(alt((parse_quoted, take_while1(display)))),
                        take_while(whitespace),
                        delimited(tag("<"), SipUri::parse(src), tag(">")),
                    )),
                    map(SipUri::parse(src), |uri| (None, "", uri)),
                )),
                move |(name, _, uri)| Self {
                    name: name.map(|name| BytesStr::from_parse(src, name.trim())),
                    uri,
                    absolute: None,
                },
            )(i)
        }
    }
}
impl_from_str!(NameAddr);

impl Print for NameAddr {
    fn print(&self, f: &mut fmt::Formatter<'_>, ctx: PrintCtx<'_>) -> fmt::Result {
        if let Some(name) = &self.name {
            write!(f, "\"{name}\"")?;
        }

        // PATCH(milliwatt): a non-SIP URI as received
        if let Some(absolute) = &self.absolute {
            return write!(f, "<{absolute}>");
        }

        write!(f, "<{}>", self.uri.print_ctx(ctx))
    }
}

/// PATCH(milliwatt): `absoluteURI = scheme ":" ( hier-part / opaque-part )` (RFC 3261 25.1) for
/// any scheme but sip and sips, taken up to the closing `>` (or, `bare`, up to `;`, `,`, `?`
/// or whitespace), without looking inside: the URI is only carried and printed back.
fn absolute_uri(bare: bool) -> impl Fn(&str) -> IResult<&str, &str> {
    move |i| {
        recognize(tuple((
            verify(
                recognize(tuple((
                    satisfy(|c| c.is_ascii_alphabetic()),
                    take_while(|c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')),
                ))),
                |scheme: &str| {
                    !scheme.eq_ignore_ascii_case("sip") && !scheme.eq_ignore_ascii_case("sips")
                },
            ),
            tag(":"),
            take_while1(|c: char| uric(c) && !(bare && matches!(c, ';' | ',' | '?'))),
        )))(i)
    }
}

/// Characters of a URI after its scheme: printable ASCII but whitespace, `<`, `>` and `"`.
fn uric(c: char) -> bool {
    c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"')
}

fn display(c: char) -> bool {
    !matches!(c, ':' | '\r' | '\n' | '<')
}

#[cfg(test)]
mod test {
    // PATCH(milliwatt)
    #[test]
    fn from_to_takes_absolute_uris_and_escaped_display_names() {
        let parse = |s: &'static str| {
            let input = BytesStr::from_static(s);
            let (rem, name_addr) = NameAddr::parse_from_to(input.as_ref())(&input).unwrap();
            (rem.to_string(), name_addr)
        };

        let (rem, tel) = parse("\"Bob\" <tel:+1-555-0100;phone-context=example.com>;tag=1");
        assert_eq!(rem, ";tag=1");
        assert_eq!(tel.name.as_deref(), Some("Bob"));
        assert_eq!(tel.absolute.as_deref(), Some("tel:+1-555-0100;phone-context=example.com"));
        assert_eq!(
            tel.default_print_ctx().to_string(),
            "\"Bob\"<tel:+1-555-0100;phone-context=example.com>"
        );

        let (rem, urn) = parse("urn:service:sos;tag=2");
        assert_eq!(rem, ";tag=2");
        assert_eq!(urn.absolute.as_deref(), Some("urn:service:sos"));

        let (rem, sip) = parse("\"a \\\"b\\\" c\" <sip:alice@example.com>;tag=3");
        assert_eq!(rem, ";tag=3");
        assert_eq!(sip.name.as_deref(), Some("a \\\"b\\\" c"));
        assert!(sip.absolute.is_none());
        assert_eq!(
            sip.default_print_ctx().to_string(),
            "\"a \\\"b\\\" c\"<sip:alice@example.com>"
        );

        // sip and sips must parse as SIP URIs; no scheme is no URI
        let bad = BytesStr::from_static("<sip:>");
        assert!(NameAddr::parse_from_to(bad.as_ref())(&bad).is_err());
        let bad = BytesStr::from_static("<SIPS:@>");
        assert!(NameAddr::parse_from_to(bad.as_ref())(&bad).is_err());
        let bad = BytesStr::from_static("<+1555>");
        assert!(NameAddr::parse_from_to(bad.as_ref())(&bad).is_err());
    }

    use super::*;
    use crate::host::Host;
    use crate::uri::sip::{SipUri, SipUriUserPart};

    #[test]
    fn name_addr() {
        let input = BytesStr::from_static("Bob <sip:bob@example.com>");

        let (rem, name_addr) = NameAddr::parse(input.as_ref())(&input).unwrap();

        assert!(rem.is_empty());

        assert_eq!(name_addr.name.as_ref().map(BytesStr::as_ref), Some("Bob"));

        let sip_uri: &SipUri = &name_addr.uri;

        assert!(!sip_uri.sips);
        assert!(sip_uri.uri_params.is_empty());
        assert!(sip_uri.header_params.is_empty());
        assert!(matches!(&sip_uri.user_part, SipUriUserPart::User(x) if x == "bob"));

        assert!(sip_uri.host_port.port.is_none());
        assert!(matches!(&sip_uri.host_port.host,  Host::Name(name) if name == "example.com"));
    }
}
