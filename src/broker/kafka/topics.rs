//! Addresses as Kafka topic names, reversibly: `_` becomes `__`, `/`
//! becomes `_s`, and any other character Kafka forbids becomes `_x` and its
//! UTF-8 bytes in hex.

/// The Kafka topic of a concrete address.
pub fn topic_name(address: &str) -> String {
    let mut out = String::with_capacity(address.len());
    for c in address.chars() {
        match c {
            '_' => out.push_str("__"),
            '/' => out.push_str("_s"),
            c if c.is_ascii_alphanumeric() || c == '.' || c == '-' => out.push(c),
            other => {
                let mut buffer = [0u8; 4];
                for byte in other.encode_utf8(&mut buffer).bytes() {
                    out.push_str(&format!("_x{byte:02x}"));
                }
            }
        }
    }
    out
}

/// The address of a topic named by [`topic_name`]; `None` for a name it
/// cannot have made.
pub fn address_of(topic: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(topic.len());
    let mut rest = topic.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        rest = tail;
        if first != b'_' {
            bytes.push(first);
            continue;
        }
        match rest.split_first() {
            Some((b'_', tail)) => (bytes.push(b'_'), rest = tail).1,
            Some((b's', tail)) => (bytes.push(b'/'), rest = tail).1,
            Some((b'x', tail)) if tail.len() >= 2 => {
                let hex = std::str::from_utf8(&tail[..2]).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &tail[2..];
            }
            _ => return None,
        }
    }
    String::from_utf8(bytes).ok()
}
