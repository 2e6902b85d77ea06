//! The JSON form of an accounting record: one object per line, metadata first (`time`,
//! `client`, `client_addr`, `identifier`), then every attribute by its dictionary name in wire
//! order. Integers with named values appear as names (`"Acct-Status-Type":"Start"`), other
//! integers as numbers, addresses as text, opaque values as `0x…` hex. An attribute that occurs
//! more than once becomes an array, at the place of its first occurrence. Sensitive attributes
//! are never written.
//!
//! The line is written straight into its buffer, without building a `serde_json::Value` map
//! first: that map (an allocation per key and per value, a SipHash per insert, then a walk to
//! serialise and another to free it) cost two thirds of the server's instructions per
//! accounting record. Strings and numbers still go through serde_json's own escaping and
//! number formatting, so the bytes are those the map produced (a test checks it against the
//! map).

use std::borrow::Cow;
use std::io::Write;
use std::net::SocketAddr;

use portcullis_proto::dict::{self, DataType, NamedValue};
use portcullis_proto::{AttrType, VerifiedRequest};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Renders one accounting request as a JSON line (without the newline).
pub fn to_json_line(
    request: &VerifiedRequest<'_>,
    client: &str,
    from: SocketAddr,
    at: OffsetDateTime,
) -> Vec<u8> {
    let mut fields: Vec<(Cow<'static, str>, Field<'_>)> = Vec::with_capacity(16);
    for a in request.attributes() {
        let t = a.attr_type;
        let v = a.value;
        if t == AttrType::VENDOR_SPECIFIC {
            if let Some((vendor, subs)) = portcullis_proto::split_vsa(v) {
                for (vt, sv) in subs {
                    fields.push(match dict::vendor_attr_def(vendor, vt) {
                        Some(d) if d.sensitive => (d.name.into(), Field::Hidden),
                        Some(d) => (d.name.into(), typed(d.data_type, d.values, sv)),
                        None => (format!("Vendor-{vendor}-Attr-{vt}").into(), Field::Hex(sv)),
                    });
                }
                continue;
            }
        }
        fields.push(match dict::attr_def(t) {
            Some(d) if d.sensitive => (d.name.into(), Field::Hidden),
            Some(d) if d.tagged => (d.name.into(), Field::Tagged(t, v)),
            Some(d) => (d.name.into(), typed(d.data_type, d.values, v)),
            None => (format!("Attr-{}", t.0).into(), Field::Hex(v)),
        });
    }

    let mut out = Vec::with_capacity(384);
    out.extend_from_slice(b"{\"time\":\"");
    // RFC 3339 output has nothing to escape; an unformattable time is an empty string.
    let start = out.len();
    if at.format_into(&mut out, &Rfc3339).is_err() {
        out.truncate(start);
    }
    out.extend_from_slice(b"\",\"client\":");
    string(&mut out, client);
    out.extend_from_slice(b",\"client_addr\":\"");
    // A socket address has nothing to escape.
    match from {
        SocketAddr::V4(a) => {
            ipv4(&mut out, a.ip().octets());
            out.push(b':');
            number(&mut out, u32::from(a.port()));
        }
        SocketAddr::V6(a) => {
            let _ = write!(out, "{a}");
        }
    }
    out.extend_from_slice(b"\",\"identifier\":");
    number(&mut out, u32::from(request.identifier()));
    // Dictionary names never collide with the four metadata keys, so only attributes merge.
    // A name is written at its first occurrence, with all its values.
    let same = SameName::new(&fields);
    for (i, (name, field)) in fields.iter().enumerate() {
        if !same.is_first(&fields, i) {
            continue;
        }
        out.push(b',');
        string(&mut out, name);
        out.push(b':');
        match same.next(&fields, i) {
            None => field.write(&mut out),
            Some(mut j) => {
                out.push(b'[');
                field.write(&mut out);
                loop {
                    out.push(b',');
                    fields[j].1.write(&mut out);
                    match same.next(&fields, j) {
                        Some(k) => j = k,
                        None => break,
                    }
                }
                out.push(b']');
            }
        }
    }
    out.push(b'}');
    out
}

/// Up to this many fields, repeated names are found by comparing pairs, without allocating
/// (cheaper than hashing for a NAS's usual 10-30 attributes); above it, through a hash map, so
/// that a 4 KiB request of 2-octet attributes from a (verified) NAS costs linear, not quadratic,
/// time.
const PAIRWISE_MAX: usize = 32;

/// Which fields share a name: for each field, whether it is the first of its name, and the
/// index of the next field with the same name.
enum SameName {
    Pairwise,
    Chains {
        first: Vec<bool>,
        next: Vec<Option<usize>>,
    },
}

impl SameName {
    fn new<T>(fields: &[(Cow<'_, str>, T)]) -> Self {
        let n = fields.len();
        if n <= PAIRWISE_MAX {
            return SameName::Pairwise;
        }
        let mut first = vec![true; n];
        let mut next = vec![None; n];
        // The last index seen of each name.
        let mut last: std::collections::HashMap<&str, usize, foldhash::fast::RandomState> =
            std::collections::HashMap::with_capacity_and_hasher(n, Default::default());
        for (i, (name, _)) in fields.iter().enumerate() {
            if let Some(prev) = last.insert(name.as_ref(), i) {
                next[prev] = Some(i);
                first[i] = false;
            }
        }
        SameName::Chains { first, next }
    }

    fn is_first<T>(&self, fields: &[(Cow<'_, str>, T)], i: usize) -> bool {
        match self {
            SameName::Pairwise => !fields[..i].iter().any(|(n, _)| *n == fields[i].0),
            SameName::Chains { first, .. } => first[i],
        }
    }

    fn next<T>(&self, fields: &[(Cow<'_, str>, T)], i: usize) -> Option<usize> {
        match self {
            SameName::Pairwise => (i + 1..fields.len()).find(|&j| fields[j].0 == fields[i].0),
            SameName::Chains { next, .. } => next[i],
        }
    }
}

/// One attribute value as it appears in the record, borrowing the packet.
enum Field<'a> {
    Hidden,
    /// Valid UTF-8 text.
    Text(&'a str),
    /// The name of an integer's value.
    Name(&'static str),
    Number(u32),
    Ipv4([u8; 4]),
    Ipv6([u8; 16]),
    /// A tagged attribute, shown as the dictionary shows it (tag and value).
    Tagged(AttrType, &'a [u8]),
    Hex(&'a [u8]),
}

impl Field<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        match *self {
            Field::Hidden => out.extend_from_slice(b"\"<hidden>\""),
            Field::Text(s) => string(out, s),
            Field::Name(s) => string(out, s),
            Field::Number(n) => number(out, n),
            // Addresses have nothing to escape.
            Field::Ipv4(b) => {
                out.push(b'"');
                ipv4(out, b);
                out.push(b'"');
            }
            Field::Ipv6(b) => {
                let _ = write!(out, "\"{}\"", std::net::Ipv6Addr::from(b));
            }
            Field::Tagged(t, v) => string(out, &dict::display_value(t, v).to_string()),
            Field::Hex(v) => {
                out.extend_from_slice(b"\"0x");
                let start = out.len();
                out.resize(start + 2 * v.len(), 0);
                // The slice is exactly twice the input's length, so this cannot fail.
                let _ = ::hex::encode_to_slice(v, &mut out[start..]);
                out.push(b'"');
            }
        }
    }
}

/// A JSON string, escaped as serde_json escapes it.
fn string(out: &mut Vec<u8>, s: &str) {
    // Names and most values need no escape (serde_json escapes only `"`, `\` and control
    // characters): copy those in one go.
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Dotted decimal, as `Ipv4Addr`'s `Display` writes it, without the formatting machinery.
fn ipv4(out: &mut Vec<u8>, octets: [u8; 4]) {
    for (i, o) in octets.into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        number(out, u32::from(o));
    }
}

/// A JSON number, formatted as serde_json formats it.
fn number(out: &mut Vec<u8>, n: u32) {
    let _ = serde_json::to_writer(&mut *out, &n);
}

fn typed<'a>(dt: DataType, names: &'static [NamedValue], v: &'a [u8]) -> Field<'a> {
    match dt {
        DataType::Text => match std::str::from_utf8(v) {
            Ok(s) => Field::Text(s),
            Err(_) => Field::Hex(v),
        },
        DataType::Integer => match <[u8; 4]>::try_from(v) {
            Ok(b) => {
                let n = u32::from_be_bytes(b);
                match names.iter().find(|(_, x)| *x == n) {
                    Some((name, _)) => Field::Name(name),
                    None => Field::Number(n),
                }
            }
            Err(_) => Field::Hex(v),
        },
        DataType::Date => match <[u8; 4]>::try_from(v) {
            Ok(b) => Field::Number(u32::from_be_bytes(b)),
            Err(_) => Field::Hex(v),
        },
        DataType::IpAddr => match <[u8; 4]>::try_from(v) {
            Ok(b) => Field::Ipv4(b),
            Err(_) => Field::Hex(v),
        },
        DataType::Ipv6Addr => match <[u8; 16]>::try_from(v) {
            Ok(b) => Field::Ipv6(b),
            Err(_) => Field::Hex(v),
        },
        _ => Field::Hex(v),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use portcullis_proto::{
        verify_request, Code, PacketBuilder, RawPacket, SharedSecret, VerifyPolicy, MICROSOFT,
    };
    use serde_json::{Map, Value};
    use time::macros::datetime;

    /// The formatter this module replaced (a `serde_json::Value` map): the reference for the
    /// bytes of the file format.
    fn reference(
        request: &VerifiedRequest<'_>,
        client: &str,
        from: SocketAddr,
        at: OffsetDateTime,
    ) -> Vec<u8> {
        fn push(m: &mut Map<String, Value>, name: String, value: Value) {
            match m.get_mut(&name) {
                None => {
                    m.insert(name, value);
                }
                Some(Value::Array(a)) => a.push(value),
                Some(prev) => {
                    let first = prev.take();
                    *prev = Value::Array(vec![first, value]);
                }
            }
        }
        fn hex(v: &[u8]) -> Value {
            Value::String(format!("0x{}", ::hex::encode(v)))
        }
        fn typed(dt: DataType, names: &[(&'static str, u32)], v: &[u8]) -> Value {
            match (dt, v.len()) {
                (DataType::Text, _) => match std::str::from_utf8(v) {
                    Ok(s) => Value::String(s.to_owned()),
                    Err(_) => hex(v),
                },
                (DataType::Integer, 4) => {
                    let n = u32::from_be_bytes(v.try_into().unwrap());
                    match names.iter().find(|(_, x)| *x == n) {
                        Some((name, _)) => Value::String((*name).to_owned()),
                        None => Value::from(n),
                    }
                }
                (DataType::Date, 4) => Value::from(u32::from_be_bytes(v.try_into().unwrap())),
                (DataType::IpAddr, 4) => Value::String(
                    std::net::Ipv4Addr::from(<[u8; 4]>::try_from(v).unwrap()).to_string(),
                ),
                (DataType::Ipv6Addr, 16) => Value::String(
                    std::net::Ipv6Addr::from(<[u8; 16]>::try_from(v).unwrap()).to_string(),
                ),
                _ => hex(v),
            }
        }
        let mut m = Map::new();
        m.insert(
            "time".into(),
            Value::String(at.format(&Rfc3339).unwrap_or_default()),
        );
        m.insert("client".into(), Value::String(client.to_owned()));
        m.insert("client_addr".into(), Value::String(from.to_string()));
        m.insert("identifier".into(), Value::from(request.identifier()));
        for a in request.attributes() {
            let (t, v) = (a.attr_type, a.value);
            if t == AttrType::VENDOR_SPECIFIC {
                if let Some((vendor, subs)) = portcullis_proto::split_vsa(v) {
                    for (vt, sv) in subs {
                        let (name, value) = match dict::vendor_attr_def(vendor, vt) {
                            Some(d) if d.sensitive => (d.name.to_owned(), Value::from("<hidden>")),
                            Some(d) => (d.name.to_owned(), typed(d.data_type, d.values, sv)),
                            None => (format!("Vendor-{vendor}-Attr-{vt}"), hex(sv)),
                        };
                        push(&mut m, name, value);
                    }
                    continue;
                }
            }
            let (name, value) = match dict::attr_def(t) {
                Some(d) if d.sensitive => (d.name.to_owned(), Value::from("<hidden>")),
                Some(d) if d.tagged => (
                    d.name.to_owned(),
                    Value::String(dict::display_value(t, v).to_string()),
                ),
                Some(d) => (d.name.to_owned(), typed(d.data_type, d.values, v)),
                None => (format!("Attr-{}", t.0), hex(v)),
            };
            push(&mut m, name, value);
        }
        serde_json::to_vec(&Value::Object(m)).unwrap()
    }

    /// Builds and verifies an Accounting-Request with `attrs`, and checks both formatters agree.
    fn check(attrs: &[(u8, &[u8])], vsas: &[(u32, u8, &[u8])], client: &str) -> String {
        let v4 = check_from(attrs, vsas, client, "192.0.2.7:1813");
        check_from(attrs, vsas, client, "[2001:db8::7]:1813");
        check_from(attrs, vsas, client, "0.255.10.100:0");
        v4
    }

    fn check_from(
        attrs: &[(u8, &[u8])],
        vsas: &[(u32, u8, &[u8])],
        client: &str,
        from: &str,
    ) -> String {
        let secret = SharedSecret::new(b"accounting-test-secret").unwrap();
        let mut b = PacketBuilder::new(Code::ACCOUNTING_REQUEST, 42);
        for (t, v) in attrs {
            b.push(AttrType(*t), v).unwrap();
        }
        for (vendor, vt, v) in vsas {
            b.push_vsa(*vendor, *vt, v).unwrap();
        }
        let bytes = b.finish_accounting_request(&secret).to_vec();
        let policy = VerifyPolicy::default().with_message_authenticator_required(false);
        let request = verify_request(RawPacket::decode(&bytes).unwrap(), &secret, &policy).unwrap();
        let from: SocketAddr = from.parse().unwrap();
        let at = datetime!(2026-11-21 23:59:59.123456 UTC);
        let line = to_json_line(&request, client, from, at);
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            String::from_utf8(reference(&request, client, from, at)).unwrap()
        );
        String::from_utf8(line).unwrap()
    }

    #[test]
    fn typical_records_match_the_map_formatter() {
        let line = check(
            &[
                (1, b"alice"),
                (4, &[127, 0, 0, 1]),
                (8, &[255, 0, 99, 10]),
                (5, &7u32.to_be_bytes()),
                (40, &1u32.to_be_bytes()),
                (44, b"0000002a-0000000001"),
                (31, b"00-11-22-33-44-55"),
                (41, &0u32.to_be_bytes()),
                (46, &60u32.to_be_bytes()),
                (49, &1u32.to_be_bytes()),
            ],
            &[],
            "bench",
        );
        assert!(line.starts_with(
            r#"{"time":"2026-11-21T23:59:59.123456Z","client":"bench","client_addr":"192.0.2.7:1813","identifier":42,"User-Name":"alice","NAS-IP-Address":"127.0.0.1","Framed-IP-Address":"255.0.99.10","NAS-Port":7,"Acct-Status-Type":"Start""#
        ));
    }

    #[test]
    fn repeats_escapes_opaque_and_unknown_values_match_the_map_formatter() {
        let line = check(
            &[
                (1, "a\"b\\c\u{1}\n\t\u{7f}é—".as_bytes()),
                (25, b"class-1"),
                (33, &[0, 1, 2]),
                (25, &[0xff, 0x00]),
                (77, &[0xc3, 0x28]),
                (55, &1_700_000_000u32.to_be_bytes()),
                (
                    95,
                    &[0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                ),
                (64, &[1, 0, 0, 3]),
                (240, b"?"),
                (33, &[9]),
                (25, b"class-3"),
                (40, &99u32.to_be_bytes()),
            ],
            &[
                (MICROSOFT, 16, &[0x80; 34]),
                (MICROSOFT, 11, &[1; 16]),
                (99_999, 1, b"x"),
            ],
            "nas \"one\"",
        );
        assert!(line.contains(r#""Class":["0x636c6173732d31","0xff00","0x636c6173732d33"]"#));
    }

    /// Above `PAIRWISE_MAX` fields repeated names are grouped through a hash map: the same
    /// bytes, first occurrence first, values in packet order.
    #[test]
    fn many_repeated_attributes_match_the_map_formatter() {
        let classes: Vec<Vec<u8>> = (0..60u8).map(|i| vec![b'c', i]).collect();
        let states: Vec<Vec<u8>> = (0..20u8).map(|i| vec![b's', i]).collect();
        let start = 1u32.to_be_bytes();
        let mut attrs: Vec<(u8, &[u8])> = vec![(1, b"alice"), (40, &start)];
        for (i, c) in classes.iter().enumerate() {
            attrs.push((25, c));
            if let Some(st) = states.get(i) {
                attrs.push((33, st));
            }
        }
        attrs.push((44, b"session"));
        assert!(attrs.len() > PAIRWISE_MAX);
        let line = check(&attrs, &[], "bench");
        assert!(line.contains(r#""Class":["0x6300","0x6301","#));
        assert!(line.ends_with(r#""Acct-Session-Id":"session"}"#));
    }

    #[test]
    fn no_dictionary_name_is_a_metadata_key() {
        let meta = ["time", "client", "client_addr", "identifier"];
        assert!(dict::ATTRIBUTES.iter().all(|d| !meta.contains(&d.name)));
        assert!(dict::VENDOR_ATTRIBUTES
            .iter()
            .all(|d| !meta.contains(&d.name)));
    }
}
