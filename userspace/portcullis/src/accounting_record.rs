//! The JSON form of an accounting record: one object per line, metadata first (`time`,
//! `client`, `client_addr`, `identifier`), then every attribute by its dictionary name in wire
//! order. Integers with named values appear as names (`"Acct-Status-Type":"Start"`), other
//! integers as numbers, addresses as text, opaque values as `0x…` hex. An attribute that occurs
//! more than once becomes an array. Sensitive attributes are never written.

use std::net::SocketAddr;

use portcullis_proto::dict::{self, DataType};
use portcullis_proto::{AttrType, VerifiedRequest};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Renders one accounting request as a JSON line (without the newline).
pub fn to_json_line(
    request: &VerifiedRequest<'_>,
    client: &str,
    from: SocketAddr,
    at: OffsetDateTime,
) -> Vec<u8> {
    let mut m = Map::new();
    m.insert(
        "time".into(),
        Value::String(at.format(&Rfc3339).unwrap_or_default()),
    );
    m.insert("client".into(), Value::String(client.to_owned()));
    m.insert("client_addr".into(), Value::String(from.to_string()));
    m.insert("identifier".into(), Value::from(request.identifier()));
    for a in request.attributes() {
        let t = a.attr_type;
        let v = a.value;
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
    serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
}

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
    match dt {
        DataType::Text => match std::str::from_utf8(v) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => hex(v),
        },
        DataType::Integer => match <[u8; 4]>::try_from(v) {
            Ok(b) => {
                let n = u32::from_be_bytes(b);
                match names.iter().find(|(_, x)| *x == n) {
                    Some((name, _)) => Value::String((*name).to_owned()),
                    None => Value::from(n),
                }
            }
            Err(_) => hex(v),
        },
        DataType::Date => match <[u8; 4]>::try_from(v) {
            Ok(b) => Value::from(u32::from_be_bytes(b)),
            Err(_) => hex(v),
        },
        DataType::IpAddr => match <[u8; 4]>::try_from(v) {
            Ok(b) => Value::String(std::net::Ipv4Addr::from(b).to_string()),
            Err(_) => hex(v),
        },
        DataType::Ipv6Addr => match <[u8; 16]>::try_from(v) {
            Ok(b) => Value::String(std::net::Ipv6Addr::from(b).to_string()),
            Err(_) => hex(v),
        },
        _ => hex(v),
    }
}
