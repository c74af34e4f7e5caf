//! Where RTP may be sent: unicast addresses only. An offer (or a StartTone) naming a multicast
//! or broadcast address would have the service send a stream to a group or a whole network, and
//! with a spoofed UDP INVITE anyone could aim the tone at third parties (amplification).
//! Signaling refuses such offers with 488 before any answer; media refuses such a StartTone
//! with INVALID_ARGUMENT, so neither relies on the other.

use std::net::{IpAddr, Ipv4Addr};

/// Why `ip` cannot be an RTP destination, or `None` for a unicast address. IPv4-mapped IPv6
/// addresses are judged as the IPv4 address they carry. The unspecified address is not judged
/// here: in SDP it means hold (RFC 3264 8.4), elsewhere the caller refuses it.
pub fn not_unicast(ip: IpAddr) -> Option<String> {
    let v4: Ipv4Addr = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) if v6.is_multicast() => {
            return Some(format!(
                "{v6} is a multicast address: RTP goes only to unicast addresses"
            ))
        }
        IpAddr::V6(v6) => v6.to_ipv4_mapped()?,
    };
    if v4.is_multicast() {
        Some(format!(
            "{v4} is a multicast address: RTP goes only to unicast addresses"
        ))
    } else if v4.is_broadcast() {
        Some(format!(
            "{v4} is the broadcast address: RTP goes only to unicast addresses"
        ))
    } else {
        None
    }
}

/// Why `ip` is refused as an RTP destination when private destinations are refused
/// (`media.refuse_private_destinations`), or `None`: IPv4 10/8, 172.16/12, 192.168/16 (RFC 1918),
/// 100.64/10 (shared, RFC 6598), 169.254/16 (link-local); IPv6 fc00::/7 (unique local) and
/// fe80::/10 (link-local); IPv4-mapped addresses as their IPv4 address. Loopback is never
/// refused (a caller on this host), nor the unspecified address (hold).
pub fn private(ip: IpAddr) -> Option<String> {
    let why = |kind: &str| Some(format!("{ip} is {kind}: private destinations are refused"));
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4,
            None if v6.segments()[0] & 0xfe00 == 0xfc00 => return why("a unique local address"),
            None if v6.segments()[0] & 0xffc0 == 0xfe80 => return why("a link-local address"),
            None => return None,
        },
    };
    let [a, b, ..] = v4.octets();
    if v4.is_private() {
        why("a private (RFC 1918) address")
    } else if a == 100 && (64..128).contains(&b) {
        why("a shared (RFC 6598) address")
    } else if v4.is_link_local() {
        why("a link-local address")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multicast_and_broadcast_are_refused_unicast_and_loopback_are_not() {
        for bad in [
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "ff02::1",
            "ff0e::101",
            "::ffff:224.0.0.5",
            "::ffff:255.255.255.255",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            let why = not_unicast(ip).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(why.contains("unicast"), "{why}");
        }
        for good in [
            "127.0.0.1",
            "192.0.2.10",
            "10.1.2.3",
            "::1",
            "2001:db8::1",
            "::ffff:192.0.2.1",
            "0.0.0.0",
        ] {
            let ip: IpAddr = good.parse().unwrap();
            assert_eq!(not_unicast(ip), None, "{good}");
        }
    }

    #[test]
    fn private_ranges_are_named_loopback_and_public_are_not() {
        for bad in [
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.10.10",
            "fd00::1",
            "fe80::1",
            "::ffff:10.1.1.1",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            let why = private(ip).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(why.contains("private destinations are refused"), "{why}");
        }
        for good in [
            "127.0.0.1",
            "::1",
            "0.0.0.0",
            "192.0.2.10",
            "172.32.0.1",
            "100.128.0.1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = good.parse().unwrap();
            assert_eq!(private(ip), None, "{good}");
        }
    }
}
