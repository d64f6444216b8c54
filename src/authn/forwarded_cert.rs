// Parsing a client-certificate header forwarded by a TLS-terminating proxy (SPEC F16), in
// the one format the configuration names: the whole value is read, and anything but
// exactly one certificate in that shape is an error. Verifying the certificate is the
// `client_cert` handler's business.

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::config::ForwardedFormat;

/// Longest forwarded-certificate header accepted.
pub(crate) const MAX_FORWARDED_BYTES: usize = 16 * 1024;

const PEM_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const PEM_END: &str = "-----END CERTIFICATE-----";

/// The DER of the one certificate in a forwarded header `value` written in `format`.
/// `Err` says what is wrong without quoting the value (it goes to the audit log).
pub(crate) fn certificate_der(format: ForwardedFormat, value: &[u8]) -> Result<Vec<u8>, &'static str> {
    if value.len() > MAX_FORWARDED_BYTES {
        return Err("forwarded certificate header too large");
    }
    let text = std::str::from_utf8(value).map_err(|_| "forwarded certificate header is not UTF-8")?;
    // Spaces and tabs around a field value are not part of it (RFC 9110 5.5).
    let text = text.trim_matches([' ', '\t']);
    let der = match format {
        ForwardedFormat::Rfc9440 => rfc9440(text)?,
        ForwardedFormat::Pem => pem_block(text)?,
        ForwardedFormat::PemUrlencoded => pem_urlencoded(text)?,
        ForwardedFormat::Xfcc => xfcc(text)?,
    };
    if der.is_empty() {
        return Err("forwarded certificate is empty");
    }
    Ok(der)
}

/// RFC 9440 `Client-Cert`: one RFC 8941 byte sequence, `:base64:`, without parameters.
fn rfc9440(text: &str) -> Result<Vec<u8>, &'static str> {
    let inner = text.strip_prefix(':').and_then(|rest| rest.strip_suffix(':'));
    let inner = inner.ok_or("rfc9440: the value is not one `:base64:` byte sequence")?;
    if inner.contains(':') {
        return Err("rfc9440: text around the byte sequence");
    }
    STANDARD.decode(inner).map_err(|_| "rfc9440: the byte sequence is not padded base64")
}

/// Separators allowed around and inside a PEM block: spaces and tabs (a proxy's stand-in
/// for line breaks) and line breaks (only possible once decoded from `%0A`).
fn is_pem_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_base64_symbol(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=')
}

/// One PEM `CERTIFICATE` block, separators allowed around the armor lines and anywhere in
/// the body; no explanatory text, no headers, no second block.
fn pem_block(text: &str) -> Result<Vec<u8>, &'static str> {
    let text = text.trim_matches(|c: char| c.is_ascii() && is_pem_space(c as u8));
    let body = text.strip_prefix(PEM_BEGIN).ok_or("pem: text before the certificate, or not a CERTIFICATE block")?;
    let body = body.strip_suffix(PEM_END).ok_or("pem: text after the certificate")?;
    if body.contains("-----") {
        return Err("pem: more than one PEM block");
    }
    let mut base64 = Vec::with_capacity(body.len());
    for byte in body.bytes().filter(|b| !is_pem_space(*b)) {
        if !is_base64_symbol(byte) {
            return Err("pem: text inside the certificate");
        }
        base64.push(byte);
    }
    STANDARD.decode(&base64).map_err(|_| "pem: the certificate is not padded base64")
}

/// A percent-encoded PEM block (nginx `$ssl_client_escaped_cert`, Envoy's XFCC `Cert`).
fn pem_urlencoded(text: &str) -> Result<Vec<u8>, &'static str> {
    let decoded = percent_decode(text)?;
    let decoded = std::str::from_utf8(&decoded).map_err(|_| "pem-urlencoded: not a PEM certificate")?;
    pem_block(decoded)
}

/// Characters a URL-encoded PEM may hold as they are: RFC 3986's unreserved ones and the
/// base64 symbols some encoders leave alone.
fn is_url_literal(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// Strict percent-decoding: every `%` starts a two-hex-digit escape, and no character
/// outside [`is_url_literal`] appears unescaped.
fn percent_decode(text: &str) -> Result<Vec<u8>, &'static str> {
    let mut decoded = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        if byte == b'%' {
            let [high, low, tail @ ..] = rest else { return Err("pem-urlencoded: a truncated %-escape") };
            let digit = |d: u8| char::from(d).to_digit(16);
            let (Some(high), Some(low)) = (digit(*high), digit(*low)) else {
                return Err("pem-urlencoded: a %-escape without two hex digits");
            };
            // Two hex digits: at most 0xff, the conversion cannot fail.
            decoded.push(u8::try_from(high * 16 + low).unwrap_or(u8::MAX));
            rest = tail;
        } else if is_url_literal(byte) {
            decoded.push(byte);
        } else {
            return Err("pem-urlencoded: a character that must be %-encoded");
        }
    }
    Ok(decoded)
}

/// The keys of an Envoy XFCC element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XfccKey {
    By,
    Hash,
    Cert,
    Chain,
    Subject,
    Uri,
    Dns,
}

impl XfccKey {
    /// Keys are case-insensitive.
    fn parse(key: &str) -> Result<Self, &'static str> {
        const KEYS: [(&str, XfccKey); 7] = [
            ("By", XfccKey::By),
            ("Hash", XfccKey::Hash),
            ("Cert", XfccKey::Cert),
            ("Chain", XfccKey::Chain),
            ("Subject", XfccKey::Subject),
            ("URI", XfccKey::Uri),
            ("DNS", XfccKey::Dns),
        ];
        let found = KEYS.iter().find(|(name, _)| name.eq_ignore_ascii_case(key));
        found.map(|(_, parsed)| *parsed).ok_or("xfcc: an unknown key")
    }
}

/// Envoy `x-forwarded-client-cert` with exactly one element: `Hash` and `Cert` once each,
/// the hash that of the certificate; `Subject` at most once; `By`, `URI`, `DNS` repeatable
/// (one per SAN); no `Chain`.
fn xfcc(text: &str) -> Result<Vec<u8>, &'static str> {
    let (mut hash, mut cert, mut subject) = (None, None, None);
    for (key, value) in xfcc_pairs(text)? {
        let slot = match XfccKey::parse(key)? {
            XfccKey::Hash => &mut hash,
            XfccKey::Cert => &mut cert,
            XfccKey::Subject => &mut subject,
            XfccKey::Chain => return Err("xfcc: Chain is not accepted (intermediates come from intermediates_file)"),
            XfccKey::By | XfccKey::Uri | XfccKey::Dns => continue,
        };
        if slot.replace(value).is_some() {
            return Err("xfcc: Hash, Cert or Subject given twice");
        }
    }
    let hash = sha256_hex(&hash.ok_or("xfcc: no Hash")?).ok_or("xfcc: Hash is not a hex SHA-256")?;
    let der = pem_urlencoded(&cert.ok_or("xfcc: no Cert")?)?;
    if Sha256::digest(&der).as_slice() != hash {
        return Err("xfcc: Hash is not the SHA-256 of Cert");
    }
    Ok(der)
}

/// 64 hex digits, any case.
fn sha256_hex(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        if !pair.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// The `key=value` pairs of a one-element XFCC value, quoted values unescaped. A `,`
/// outside quotes starts a second element: refused.
fn xfcc_pairs(text: &str) -> Result<Vec<(&str, Cow<'_, str>)>, &'static str> {
    let mut pairs = Vec::new();
    let mut rest = text;
    loop {
        let (key, after_key) = rest.split_once('=').ok_or("xfcc: a pair without `=`")?;
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(if key.contains(',') { "xfcc: more than one element" } else { "xfcc: a malformed key" });
        }
        let (value, after) = match after_key.strip_prefix('"') {
            Some(quoted) => xfcc_quoted(quoted)?,
            None => xfcc_unquoted(after_key)?,
        };
        pairs.push((key, value));
        if after.is_empty() {
            return Ok(pairs);
        }
        rest = match after.strip_prefix(';') {
            Some(next) => next,
            None if after.starts_with(',') => return Err("xfcc: more than one element"),
            None => return Err("xfcc: text after a quoted value"),
        };
    }
}

/// A value up to the next `;` or `,`; one holding `=`, `"` or whitespace needed quotes.
fn xfcc_unquoted(text: &str) -> Result<(Cow<'_, str>, &str), &'static str> {
    let end = text.find([';', ',']).unwrap_or(text.len());
    let (value, after) = text.split_at(end);
    if value.contains(['=', '"', ' ', '\t']) {
        return Err("xfcc: an unquoted value with `=`, `\"` or whitespace");
    }
    Ok((Cow::Borrowed(value), after))
}

/// A quoted value after its opening `"`: a backslash escapes the next character; returns
/// the value and the text after the closing `"`.
fn xfcc_quoted(text: &str) -> Result<(Cow<'_, str>, &str), &'static str> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => value.push(chars.next().ok_or("xfcc: a quoted value ends in a backslash")?.1),
            // `"` is one byte: `at + 1` is a character boundary.
            '"' => return Ok((Cow::Owned(value), &text[at + 1..])),
            c => value.push(c),
        }
    }
    Err("xfcc: a quoted value without its closing quote")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ForwardedFormat::{Pem, PemUrlencoded, Rfc9440, Xfcc};

    /// A real certificate, DER (its contents do not matter to the parsers).
    fn der(cn: &str) -> Vec<u8> {
        rcgen::generate_simple_self_signed(vec![cn.to_owned()]).map(|c| c.cert.der().to_vec()).unwrap()
    }

    /// PEM as OpenSSL writes it: 64-character lines, `\n` after each.
    fn pem(der: &[u8]) -> String {
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        format!("{PEM_BEGIN}\n{}\n{PEM_END}\n", lines.join("\n"))
    }

    /// nginx `$ssl_client_escaped_cert`: everything but letters, digits and `-._~` escaped.
    fn nginx_escaped(pem: &str) -> String {
        let keep = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
        pem.bytes().map(|b| if keep(b) { char::from(b).to_string() } else { format!("%{b:02X}") }).collect()
    }

    /// Envoy's XFCC `Cert`: newline, space, `+`, `/` and `=` escaped.
    fn envoy_escaped(pem: &str) -> String {
        pem.replace('\n', "%0A").replace(' ', "%20").replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
    }

    /// Bytes whose base64 ends in `==` (the parsers do not look inside the DER).
    fn padded() -> Vec<u8> {
        vec![0x30; 100]
    }

    fn sha256_of(der: &[u8]) -> String {
        Sha256::digest(der).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// An XFCC element as Envoy writes it (`SANITIZE_SET` with Subject, URI and DNS).
    fn envoy_xfcc(der: &[u8]) -> String {
        format!(
            "By=spiffe://cluster.local/ns/edge/sa/envoy;Hash={};Cert=\"{}\";Subject=\"CN=alex,OU=Dev\\, Ops;O=Example\";URI=spiffe://client.example/alex;DNS=alex.example;DNS=www.alex.example",
            sha256_of(der),
            envoy_escaped(&pem(der))
        )
    }

    #[track_caller]
    fn accepts(format: ForwardedFormat, value: &str, expected: &[u8]) {
        assert_eq!(certificate_der(format, value.as_bytes()).as_deref(), Ok(expected), "{format}: {value:?}");
    }

    #[track_caller]
    fn refuses(format: ForwardedFormat, value: &str, what: &str) {
        let result = certificate_der(format, value.as_bytes());
        assert!(result.is_err(), "{format} must refuse {what}: {value:?}");
    }

    // SPEC F16: RFC 9440 is exactly one `:base64:` byte sequence; spaces and tabs around the
    // field value are not part of it.
    #[test]
    fn f16_rfc9440_accepts_one_byte_sequence() {
        let alex = der("alex");
        let value = format!(":{}:", STANDARD.encode(&alex));
        accepts(Rfc9440, &value, &alex);
        accepts(Rfc9440, &format!(" \t{value}  "), &alex);
    }

    // SPEC F16: anything before, after or inside an RFC 9440 byte sequence, another
    // encoding, or two certificates are refused.
    #[test]
    fn f16_rfc9440_refusals() {
        let (alex, admin) = (STANDARD.encode(der("alex")), STANDARD.encode(der("admin")));
        let padded_base64 = STANDARD.encode(padded());
        accepts(Rfc9440, &format!(":{padded_base64}:"), &padded());
        let cases = [
            (format!("x:{alex}:"), "text before"),
            (format!(":{alex}:x"), "text after"),
            (format!(":{alex}:;a=1"), "a parameter"),
            (format!(":{alex}:, :{admin}:"), "two certificates (a list)"),
            (format!(":{alex}::{admin}:"), "two byte sequences"),
            (format!(":{}: {}:", &alex[..8], &alex[8..]), "a space inside"),
            (format!(":{}\t{}:", &alex[..8], &alex[8..]), "a tab inside"),
            (format!(":{}:", padded_base64.trim_end_matches('=')), "missing padding"),
            (format!(":{}:", padded_base64.replace("==", "=")), "short padding"),
            (format!(":{}:", alex.replace('+', "-").replace('/', "_")), "the URL-safe alphabet"),
            (alex.clone(), "bare base64"),
            (format!(":{alex}"), "no closing colon"),
            ("::".to_owned(), "an empty byte sequence"),
            (":".to_owned(), "a lone colon"),
            (String::new(), "an empty value"),
            (pem(&der("alex")).replace('\n', " "), "PEM"),
        ];
        for (value, what) in &cases {
            refuses(Rfc9440, value, what);
        }
    }

    // SPEC F16: a bare PEM certificate whose line breaks became spaces or tabs, or were
    // dropped, is accepted.
    #[test]
    fn f16_pem_accepts_spaces_tabs_and_no_separators() {
        let alex = der("alex");
        let text = pem(&alex);
        accepts(Pem, &text.trim().replace('\n', " "), &alex);
        accepts(Pem, &text.trim().replace('\n', "\t"), &alex);
        accepts(Pem, &text.trim().replace('\n', " \t  "), &alex);
        accepts(Pem, &text.trim().replace('\n', ""), &alex);
        accepts(Pem, &format!("  {} \t", text.trim().replace('\n', " ")), &alex);
    }

    // SPEC F16: text before, after or inside a PEM certificate, two certificates, another
    // PEM label and other encodings are refused.
    #[test]
    fn f16_pem_refusals() {
        let one_line = |der: &[u8]| pem(der).trim().replace('\n', " ");
        let (alex, admin) = (one_line(&der("alex")), one_line(&der("admin")));
        let body = STANDARD.encode(der("alex"));
        let cases = [
            (format!("Subject=alice {alex}"), "text before"),
            (format!("{alex} alice"), "text after"),
            (format!("{alex};Hash=00"), "a key after"),
            (format!("{alex} {admin}"), "two certificates"),
            (format!("{alex}{admin}"), "two certificates without a separator"),
            (alex.replace("CERTIFICATE", "TRUSTED CERTIFICATE"), "another label"),
            (alex.replace("-----BEGIN", "-----begin"), "a lowercase armor"),
            (alex.replacen("----- ", "----- Proc-Type: 4,ENCRYPTED ", 1), "PEM headers"),
            (
                alex.replacen(&format!("{PEM_BEGIN} "), &format!("{PEM_BEGIN} Subject: CN=alice "), 1),
                "text in the body",
            ),
            (one_line(&padded()).replace('=', ""), "missing padding"),
            (nginx_escaped(&pem(&der("alex"))), "URL-encoded PEM"),
            (format!(":{body}:"), "RFC 9440"),
            (body.clone(), "bare base64"),
            (format!("{PEM_BEGIN} {PEM_END}"), "an empty certificate"),
            (PEM_BEGIN.to_owned(), "no END line"),
        ];
        for (value, what) in &cases {
            refuses(Pem, value, what);
        }
    }

    // SPEC F16: nginx's `$ssl_client_escaped_cert` and Envoy's escaping, upper- or
    // lower-case hex, CRLF line breaks: one URL-encoded PEM certificate.
    #[test]
    fn f16_pem_urlencoded_accepts_nginx_and_envoy_escaping() {
        let alex = der("alex");
        let text = pem(&alex);
        accepts(PemUrlencoded, &nginx_escaped(&text), &alex);
        accepts(PemUrlencoded, &envoy_escaped(&text), &alex);
        let lower_hex = ["%0A", "%2B", "%2F", "%3D", "%20"]
            .iter()
            .fold(nginx_escaped(&text), |value, escape| value.replace(escape, &escape.to_lowercase()));
        assert!(lower_hex.contains("%0a"));
        accepts(PemUrlencoded, &lower_hex, &alex);
        accepts(PemUrlencoded, &nginx_escaped(&text.replace('\n', "\r\n")), &alex);
        accepts(PemUrlencoded, &nginx_escaped(&text.replace('\n', " ")), &alex);
        accepts(PemUrlencoded, &format!(" {}\t", nginx_escaped(&text)), &alex);
    }

    // SPEC F16: URL-encoding errors and anything but one encoded PEM certificate are refused.
    #[test]
    fn f16_pem_urlencoded_refusals() {
        let text = pem(&der("alex"));
        let alex = nginx_escaped(&text);
        let admin = nginx_escaped(&pem(&der("admin")));
        let cases = [
            (format!("alice{alex}"), "text before"),
            (format!("{alex}alice"), "text after"),
            (nginx_escaped(&format!("Subject: alice\n{text}")), "encoded text before"),
            (nginx_escaped(&format!("{text}alice\n")), "encoded text after"),
            (format!("{alex}{admin}"), "two certificates"),
            (text.trim().replace('\n', " "), "a bare PEM (raw spaces)"),
            (format!("{alex}%"), "a lone %"),
            (format!("{alex}%0"), "a truncated escape"),
            (alex.replacen("%0A", "%G0", 1), "a non-hex escape"),
            (alex.replacen("%0A", "%0 A", 1), "a space inside an escape"),
            (alex.replace('%', "%25"), "double encoding"),
            (format!("%FF{alex}"), "a byte that is not UTF-8"),
            (alex.replacen("%0A", "\"", 1), "a raw quote"),
            (alex.replacen("%0A", "%00", 1), "an encoded NUL"),
            (alex.replacen("%0A", " ", 1), "a raw space inside"),
        ];
        for (value, what) in &cases {
            refuses(PemUrlencoded, value, what);
        }
    }

    // SPEC F16: Envoy's XFCC element, keys in any case, Cert quoted or not, and a quoted
    // Subject holding `,`, `;`, `=` and escaped quotes is accepted when the rest is right.
    #[test]
    fn f16_xfcc_accepts_one_envoy_element() {
        let alex = der("alex");
        accepts(Xfcc, &envoy_xfcc(&alex), &alex);
        let (hash, cert) = (sha256_of(&alex), envoy_escaped(&pem(&alex)));
        accepts(Xfcc, &format!("Hash={hash};Cert={cert}"), &alex);
        accepts(Xfcc, &format!("cert=\"{cert}\";HASH={}", hash.to_uppercase()), &alex);
        let subject = r#"Subject="CN=alex;OU=a,b=c\"d\\";URI=;DNS=x"#;
        accepts(Xfcc, &format!("Hash={hash};{subject};Cert=\"{cert}\""), &alex);
        accepts(Xfcc, &format!(" \t{} ", envoy_xfcc(&alex)), &alex);
        accepts(Xfcc, &format!("Hash={hash};Cert=\"{}\"", nginx_escaped(&pem(&alex))), &alex);
    }

    // SPEC F16: the attack (Hash of another certificate next to the admin's Cert), two
    // elements, missing or repeated keys, Chain, unknown keys and other shapes are refused.
    #[test]
    fn f16_xfcc_refusals() {
        let (alex, admin) = (der("alex"), der("admin"));
        let (hash, cert) = (sha256_of(&alex), envoy_escaped(&pem(&alex)));
        let admin_cert = envoy_escaped(&pem(&admin));
        let ok = format!("Hash={hash};Cert=\"{cert}\"");
        let cases = [
            (
                format!("By=spiffe://edge;Hash={hash};Subject=\"CN=alice\";Cert=\"{admin_cert}\""),
                "the Hash of another certificate (the admin swap)",
            ),
            (format!("{ok},{}", envoy_xfcc(&admin)), "two elements"),
            (format!("{},{ok}", envoy_xfcc(&admin)), "two elements, the good one last"),
            (format!("{ok},"), "a trailing comma"),
            (format!("{ok};DNS=a.example,DNS=b.example"), "an unquoted `,` (a second element)"),
            (format!("{ok};Subject=CN=alice,OU=x"), "an unquoted Subject with `=` and `,`"),
            (format!("Cert=\"{cert}\""), "no Hash"),
            (format!("Hash={hash}"), "no Cert"),
            (format!("Hash=;Cert=\"{cert}\""), "an empty Hash"),
            (format!("Hash={};Cert=\"{cert}\"", &hash[..62]), "a short Hash"),
            (format!("Hash={}zz;Cert=\"{cert}\"", &hash[..62]), "a Hash that is not hex"),
            (format!("{ok};Hash={hash}"), "Hash twice"),
            (format!("{ok};hash={hash}"), "Hash twice, in another case"),
            (format!("{ok};Cert=\"{admin_cert}\""), "Cert twice"),
            (format!("{ok};Subject=\"CN=a\";Subject=\"CN=b\""), "Subject twice"),
            (format!("{ok};Chain=\"{cert}\""), "a Chain"),
            (format!("{ok};User=admin"), "an unknown key"),
            (format!("{ok};"), "a trailing `;`"),
            (format!("{ok};;By=x"), "an empty pair"),
            (format!("{ok};By"), "a pair without `=`"),
            (format!("{ok};=x"), "an empty key"),
            (format!("Hash = {hash};Cert=\"{cert}\""), "spaces around `=`"),
            (format!("Hash={hash}; Cert=\"{cert}\""), "a space after `;`"),
            (format!("Hash={hash};Cert=\"{cert}\"x"), "text after a quoted value"),
            (format!("Hash={hash};Cert=\"{cert}"), "an unterminated quote"),
            (format!("Hash={hash};Cert=\"{cert}\\"), "a trailing backslash"),
            (format!("{ok};By=a=b"), "an unquoted value with `=`"),
            (format!("{ok};By=a\"b\""), "a quote inside an unquoted value"),
            (format!("Hash={hash};Cert=\"alice{cert}\""), "text before the Cert's PEM"),
            (format!("Hash={hash};Cert=\"{cert}alice\""), "text after the Cert's PEM"),
            (format!("Hash={hash};Cert=\"{cert}{admin_cert}\""), "two certificates in Cert"),
            (
                format!("Hash={hash};Cert=\"{}\"", pem(&alex).trim().replace('\n', " ")),
                "a Cert that is not URL-encoded",
            ),
            (format!("Hash={hash};Cert=\"{}\"", cert.replacen("%0A", "%0", 1)), "a URL-encoding error in Cert"),
            (format!(":{}:", STANDARD.encode(&alex)), "RFC 9440"),
            (String::new(), "an empty value"),
        ];
        for (value, what) in &cases {
            refuses(Xfcc, value, what);
        }
        // Control: the same pieces, well formed.
        accepts(Xfcc, &ok, &alex);
    }

    // SPEC F16: in every format a value longer than the limit, or not UTF-8, is refused
    // before it is parsed.
    #[test]
    fn f16_size_and_encoding_limits() {
        for format in [Rfc9440, Pem, PemUrlencoded, Xfcc] {
            let long = format!(":{}:", "A".repeat(MAX_FORWARDED_BYTES));
            assert_eq!(certificate_der(format, long.as_bytes()), Err("forwarded certificate header too large"));
            assert_eq!(certificate_der(format, b":\xff:"), Err("forwarded certificate header is not UTF-8"));
        }
    }
}
