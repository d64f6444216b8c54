// Strict JSON for what a caller or a remote server wrote (JWT headers and payloads,
// introspection answers; SPEC F10, F18): an object that names a member twice is refused.
// RFC 8259 leaves duplicates to the parser, and parsers disagree (first wins, last wins),
// so a token could mean one thing to its issuer and another here; RFC 7515 section 4 and
// RFC 7519 section 4 say to reject it. The check rides on the one parse into a `Value`:
// inserting a member reports whether the name was already there, so it costs nothing.
// `members` reads a few members of an object (a JOSE header) without building the rest.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses one JSON document, refusing duplicate member names at any depth. Nesting is
/// bounded by serde_json's recursion limit (128), as for `serde_json::from_slice`.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let StrictValue(value) = StrictValue::deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// The members `names` of one JSON object, each `None` when absent, read as strictly as
/// [`parse`] reads: a member named twice refuses, at any depth, and the other members are
/// checked the same way, then dropped. Only the named members become `Value`s, so a small
/// object of which a few members matter (a JOSE header) costs little.
pub(crate) fn members<const N: usize>(bytes: &[u8], names: [&str; N]) -> Result<[Option<Value>; N], serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let picked = (&mut deserializer).deserialize_map(Members { names })?;
    deserializer.end()?;
    Ok(picked)
}

struct Members<'n, const N: usize> {
    names: [&'n str; N],
}

impl<'de, const N: usize> Visitor<'de> for Members<'_, N> {
    type Value = [Option<Value>; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object without duplicate member names")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut picked = std::array::from_fn(|_| None);
        // A set, not a list: a header of thousands of members costs n log n, not n².
        let mut seen = BTreeSet::new();
        while let Some(MemberName(name)) = map.next_key()? {
            let StrictValue(value) = map.next_value()?;
            if let Some(slot) = self.names.iter().position(|wanted| *wanted == name) {
                picked[slot] = Some(value);
            }
            if !seen.insert(name) {
                return Err(de::Error::custom("a member name appears twice in one object"));
            }
        }
        Ok(picked)
    }
}

/// A member name, borrowed from the input unless it holds escapes.
struct MemberName<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for MemberName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(MemberNameVisitor)
    }
}

struct MemberNameVisitor;

impl<'de> Visitor<'de> for MemberNameVisitor {
    type Value = MemberName<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<MemberName<'de>, E> {
        Ok(MemberName(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<MemberName<'de>, E> {
        Ok(MemberName(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<MemberName<'de>, E> {
        Ok(MemberName(Cow::Owned(v)))
    }
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

/// serde_json's own `Value` visitor, with the duplicate check in `visit_map`.
struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON without duplicate member names")
    }

    fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Number(v.into())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<StrictValue, E> {
        Ok(StrictValue(Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }

    fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(StrictValue(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if members.insert(name, value).is_some() {
                return Err(de::Error::custom("a member name appears twice in one object"));
            }
        }
        Ok(StrictValue(Value::Object(members)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPEC F10: duplicate member names refuse at any depth, escaped spellings included;
    // everything else parses exactly as serde_json does.
    #[test]
    fn duplicate_members_are_refused() {
        for bad in [
            r#"{"sub":"alice","sub":"admin"}"#,
            r#"{"sub":"alice","s\u0075b":"admin"}"#,
            r#"{"cnf":{"x5t#S256":"a","x5t#S256":"b"}}"#,
            r#"{"a":[{"k":1,"k":1}]}"#,
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
        for good in [
            r#"{"sub":"alice","aud":["a","a"],"exp":1e3,"n":-5,"big":18446744073709551615,"x":null,"t":true}"#,
            r#"{"a":{"k":1},"b":{"k":1}}"#,
            "[]",
            r#""text""#,
        ] {
            let expected: Value = serde_json::from_str(good).unwrap();
            assert_eq!(parse(good.as_bytes()).unwrap(), expected, "{good}");
        }
        assert!(parse(br#"{"a":1} x"#).is_err(), "trailing data");
        for bad in [
            r#"{"alg":"a","alg":"b"}"#,
            r#"{"alg":"a","\u0061lg":"b"}"#,
            r#"{"x":1,"x":2}"#,
            r#"{"jwk":{"k":1,"k":2}}"#,
            r#"{"alg":"a"} x"#,
            r#"["alg"]"#,
        ] {
            assert!(members(bad.as_bytes(), ["alg"]).is_err(), "{bad}");
        }
        let [alg, kid] = members(br#"{"kid":null,"x":{"y":[1]},"alg":"RS256"}"#, ["alg", "kid"]).unwrap();
        assert_eq!((alg, kid), (Some(Value::from("RS256")), Some(Value::Null)));
        assert_eq!(members(br#"{}"#, ["alg"]).unwrap(), [None]);
    }

    // SPEC F18: an object of many members (an attacker's JWT header) costs n log n to
    // check for duplicates: 50,000 members take well under the bound even in a debug
    // build, where comparing each name with every earlier one would take minutes.
    #[test]
    fn many_members_are_checked_in_bounded_time() {
        let members_json = (0..50_000).map(|i| format!("\"m{i}\":0")).collect::<Vec<_>>().join(",");
        let object = format!("{{\"alg\":\"RS256\",{members_json}}}");
        let started = std::time::Instant::now();
        assert_eq!(members(object.as_bytes(), ["alg"]).unwrap(), [Some(Value::from("RS256"))]);
        let twice = format!("{{{members_json},\"m49999\":1}}");
        assert!(members(twice.as_bytes(), ["alg"]).is_err(), "the last name repeats the 50,000th");
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
        let deep = format!("{}1{}", "[".repeat(5000), "]".repeat(5000));
        assert!(parse(deep.as_bytes()).is_err(), "nesting beyond the recursion limit");
    }
}
