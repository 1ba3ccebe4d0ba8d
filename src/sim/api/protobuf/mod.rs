//! Protobuf request bodies, as kubectl sends them for built-in kinds
//! (`application/vnd.kubernetes.protobuf`): the `k8s\0` envelope around a
//! `runtime.Unknown`, whose `raw` bytes are the object's message. They are decoded to
//! the object's JSON with the field tables in `schema.rs` (generated from the
//! Kubernetes .proto definitions), so that `kubectl create namespace x` works against
//! the simulation as it does against a real API server. A kind without a table is
//! answered 415, as a server answers a content type it cannot take.

mod schema;

use serde_json::{Map, Value, json};

/// One field of a message: (number, JSON name, type).
pub struct Field(pub u32, pub &'static str, pub Kind);

/// A field's type. `Msg`s name another message in the table; the rest are scalars,
/// lists, maps, and the messages with a JSON form of their own (Time, Quantity, ...).
pub enum Kind {
    Str,
    Bool,
    I32,
    I64,
    F32,
    F64,
    Bytes,
    RepStr,
    RepI32,
    RepI64,
    MapStr,
    MapBytes,
    Msg(&'static str),
    RepMsg(&'static str),
    MapMsg(&'static str),
    Time,
    RepTime,
    Quantity,
    MapQuantity,
    IntOrString,
    Raw,
    RepRaw,
}

pub const MAGIC: &[u8] = b"k8s\0";

/// The fields of a wire message, in order: (number, value).
#[derive(Debug)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

fn varint(b: &[u8], i: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i).ok_or("truncated varint")?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn fields(b: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        let (num, wt) = ((key >> 3) as u32, key & 7);
        let w = match wt {
            0 => Wire::Varint(varint(b, &mut i)?),
            1 => {
                let s = b.get(i..i + 8).ok_or("truncated fixed64")?;
                i += 8;
                Wire::Fixed64(u64::from_le_bytes(s.try_into().map_err(|_| "fixed64")?))
            }
            2 => {
                let len = varint(b, &mut i)? as usize;
                let s = b.get(i..i + len).ok_or("truncated bytes")?;
                i += len;
                Wire::Bytes(s)
            }
            5 => {
                let s = b.get(i..i + 4).ok_or("truncated fixed32")?;
                i += 4;
                Wire::Fixed32(u32::from_le_bytes(s.try_into().map_err(|_| "fixed32")?))
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        out.push((num, w));
    }
    Ok(out)
}

fn table(name: &str) -> Result<&'static [Field], String> {
    schema::MESSAGES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .ok_or_else(|| format!("no protobuf table for {name}"))
}

fn text(w: &Wire) -> Result<String, String> {
    match w {
        Wire::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|e| e.to_string()),
        _ => Err("expected a length-delimited string".into()),
    }
}

fn int(w: &Wire, bits32: bool) -> Result<i64, String> {
    match w {
        Wire::Varint(v) if bits32 => Ok(i64::from(*v as u32 as i32)),
        Wire::Varint(v) => Ok(*v as i64),
        _ => Err("expected a varint".into()),
    }
}

/// The integers of a repeated field: packed (one length-delimited run) or not.
fn ints(w: &Wire, bits32: bool) -> Result<Vec<i64>, String> {
    match w {
        Wire::Bytes(b) => {
            let mut i = 0;
            let mut out = Vec::new();
            while i < b.len() {
                out.push(int(&Wire::Varint(varint(b, &mut i)?), bits32)?);
            }
            Ok(out)
        }
        other => Ok(vec![int(other, bits32)?]),
    }
}

fn time(b: &[u8]) -> Result<Value, String> {
    let (mut secs, mut nanos) = (0i64, 0i64);
    for (n, w) in fields(b)? {
        match n {
            1 => secs = int(&w, false)?,
            2 => nanos = int(&w, true)?,
            _ => {}
        }
    }
    let t = chrono::DateTime::from_timestamp(secs, nanos as u32).ok_or("time out of range")?;
    let fmt = if nanos == 0 {
        chrono::SecondsFormat::Secs
    } else {
        chrono::SecondsFormat::Micros
    };
    Ok(json!(t.to_rfc3339_opts(fmt, true)))
}

fn quantity(b: &[u8]) -> Result<Value, String> {
    for (n, w) in fields(b)? {
        if n == 1 {
            return Ok(json!(text(&w)?));
        }
    }
    Ok(json!("0"))
}

fn int_or_string(b: &[u8]) -> Result<Value, String> {
    let (mut is_str, mut i, mut s) = (false, 0i64, String::new());
    for (n, w) in fields(b)? {
        match n {
            1 => is_str = int(&w, false)? == 1,
            2 => i = int(&w, true)?,
            3 => s = text(&w)?,
            _ => {}
        }
    }
    Ok(if is_str { json!(s) } else { json!(i) })
}

fn raw(b: &[u8]) -> Result<Value, String> {
    for (n, w) in fields(b)? {
        if n == 1
            && let Wire::Bytes(r) = w
        {
            return serde_json::from_slice(r).map_err(|e| e.to_string());
        }
    }
    Ok(Value::Null)
}

fn bytes_of<'a>(w: &Wire<'a>) -> Result<&'a [u8], String> {
    match w {
        Wire::Bytes(b) => Ok(b),
        _ => Err("expected length-delimited bytes".into()),
    }
}

/// A map entry's key and value (fields 1 and 2).
fn entry<'a>(b: &'a [u8]) -> Result<(String, Option<Wire<'a>>), String> {
    let mut key = String::new();
    let mut value = None;
    for (n, w) in fields(b)? {
        match n {
            1 => key = text(&w)?,
            2 => value = Some(w),
            _ => {}
        }
    }
    Ok((key, value))
}

fn base64(b: &[u8]) -> Value {
    use base64::Engine;
    json!(base64::engine::general_purpose::STANDARD.encode(b))
}

/// One message's bytes as JSON, by its table.
fn message(name: &str, b: &[u8]) -> Result<Value, String> {
    let table = table(name)?;
    let mut out = Map::new();
    for (n, w) in fields(b)? {
        // Fields the table does not know (newer than it) are dropped, as a server
        // drops unknown fields.
        let Some(Field(_, key, kind)) = table.iter().find(|f| f.0 == n) else {
            continue;
        };
        let key = key.to_string();
        let push = |out: &mut Map<String, Value>, v: Value| {
            let list = out.entry(key.clone()).or_insert_with(|| json!([]));
            if let Value::Array(a) = list {
                a.push(v);
            }
        };
        let put = |out: &mut Map<String, Value>, k: String, v: Value| {
            let m = out.entry(key.clone()).or_insert_with(|| json!({}));
            m[k] = v;
        };
        match kind {
            Kind::Str => {
                out.insert(key, json!(text(&w)?));
            }
            Kind::Bool => {
                out.insert(key, json!(int(&w, false)? != 0));
            }
            Kind::I32 => {
                out.insert(key, json!(int(&w, true)?));
            }
            Kind::I64 => {
                out.insert(key, json!(int(&w, false)?));
            }
            Kind::F64 => {
                if let Wire::Fixed64(v) = w {
                    out.insert(key, json!(f64::from_bits(v)));
                }
            }
            Kind::F32 => {
                if let Wire::Fixed32(v) = w {
                    out.insert(key, json!(f32::from_bits(v)));
                }
            }
            Kind::Bytes => {
                out.insert(key, base64(bytes_of(&w)?));
            }
            Kind::RepStr => push(&mut out, json!(text(&w)?)),
            Kind::RepI32 | Kind::RepI64 => {
                for v in ints(&w, matches!(kind, Kind::RepI32))? {
                    push(&mut out, json!(v));
                }
            }
            Kind::MapStr => {
                let (k, v) = entry(bytes_of(&w)?)?;
                let v = v.map(|v| text(&v)).transpose()?.unwrap_or_default();
                put(&mut out, k, json!(v));
            }
            Kind::MapBytes => {
                let (k, v) = entry(bytes_of(&w)?)?;
                let v = v.map(|v| bytes_of(&v).map(base64)).transpose()?;
                put(&mut out, k, v.unwrap_or(json!("")));
            }
            Kind::MapQuantity => {
                let (k, v) = entry(bytes_of(&w)?)?;
                let v = v.map(|v| bytes_of(&v).and_then(quantity)).transpose()?;
                put(&mut out, k, v.unwrap_or(json!("0")));
            }
            Kind::MapMsg(m) => {
                let (k, v) = entry(bytes_of(&w)?)?;
                let v = v
                    .map(|v| bytes_of(&v).and_then(|b| message(m, b)))
                    .transpose()?;
                put(&mut out, k, v.unwrap_or(json!({})));
            }
            Kind::Msg(m) => {
                out.insert(key, message(m, bytes_of(&w)?)?);
            }
            Kind::RepMsg(m) => push(&mut out, message(m, bytes_of(&w)?)?),
            Kind::Time => {
                out.insert(key, time(bytes_of(&w)?)?);
            }
            Kind::RepTime => push(&mut out, time(bytes_of(&w)?)?),
            Kind::Quantity => {
                out.insert(key, quantity(bytes_of(&w)?)?);
            }
            Kind::IntOrString => {
                out.insert(key, int_or_string(bytes_of(&w)?)?);
            }
            Kind::Raw => {
                out.insert(key, raw(bytes_of(&w)?)?);
            }
            Kind::RepRaw => push(&mut out, raw(bytes_of(&w)?)?),
        }
    }
    Ok(Value::Object(out))
}

/// Why a protobuf body cannot be taken: the kind has no table (415), or the bytes are
/// not a valid message (400).
#[derive(Debug)]
pub enum Refused {
    UnknownKind(String),
    Malformed(String),
}

/// A protobuf request body as the object's JSON.
pub fn decode(body: &[u8]) -> Result<Value, Refused> {
    let bad = |e: String| Refused::Malformed(e);
    let inner = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("the protobuf body lacks the k8s envelope".into()))?;
    let (mut api_version, mut kind, mut raw_msg) = (String::new(), String::new(), &[][..]);
    for (n, w) in fields(inner).map_err(bad)? {
        match n {
            1 => {
                for (m, tw) in fields(bytes_of(&w).map_err(bad)?).map_err(bad)? {
                    match m {
                        1 => api_version = text(&tw).map_err(bad)?,
                        2 => kind = text(&tw).map_err(bad)?,
                        _ => {}
                    }
                }
            }
            2 => raw_msg = bytes_of(&w).map_err(bad)?,
            _ => {}
        }
    }
    let Some((_, _, msg)) = schema::KINDS
        .iter()
        .find(|(av, k, _)| *av == api_version && *k == kind)
    else {
        return Err(Refused::UnknownKind(format!("{api_version} {kind}")));
    };
    let mut v = message(msg, raw_msg).map_err(bad)?;
    v["apiVersion"] = json!(api_version);
    v["kind"] = json!(kind);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len_field(num: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![((num << 3) | 2) as u8];
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_namespace_as_kubectl_sends_it() {
        // ObjectMeta{name: "x", labels: {"a": "b"}}
        let labels = [len_field(1, b"a"), len_field(2, b"b")].concat();
        let meta = [len_field(1, b"x"), len_field(11, &labels)].concat();
        let ns = len_field(1, &meta);
        let type_meta = [len_field(1, b"v1"), len_field(2, b"Namespace")].concat();
        let unknown = [len_field(1, &type_meta), len_field(2, &ns)].concat();
        let body = [MAGIC, &unknown].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "labels": {"a": "b"}}})
        );
        let odd = [len_field(1, b"v1"), len_field(2, b"Widget")].concat();
        let body = [MAGIC, &len_field(1, &odd)].concat();
        assert!(matches!(decode(&body), Err(Refused::UnknownKind(_))));
        assert!(matches!(
            decode(b"not protobuf"),
            Err(Refused::Malformed(_))
        ));
    }
}
