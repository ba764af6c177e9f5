//! Hex text for hashes and keys: what people copy between commands.

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    // One allocation for the whole text (a binary task output can be
    // megabytes; a `format!` per byte was a requester's largest cost).
    // A table lookup per nibble into bytes, checked as UTF-8 once at the end:
    // `char::from_digit` and `String::push` branch on every digit (0.8 - 0.9x
    // the time of that on 32 MiB: bench/history/2026-12-06.md).
    const DIGITS: [u8; 16] = *b"0123456789abcdef";
    // `d & 0x0f` is below 16, so `get` never misses (and the compiler
    // drops the check).
    let digit = |d: u8| DIGITS.get(usize::from(d & 0x0f)).copied().unwrap_or(b'0');
    let mut text = Vec::with_capacity(bytes.len().saturating_mul(2));
    for &b in bytes {
        text.extend_from_slice(&[digit(b >> 4), digit(b)]);
    }
    // Every byte is an ASCII digit, so this never takes the fallback.
    String::from_utf8(text).unwrap_or_default()
}

/// Parses 64 hex digits into 32 bytes.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    parse_hex(s)?.try_into().ok()
}

/// Parses an even number of hex digits into bytes.
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let text = hex(&all);
        assert_eq!(&text[..8], "00010203");
        assert_eq!(&text[text.len() - 4..], "feff");
        let by_format: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(text, by_format);
        assert_eq!(parse_hex(&text).unwrap(), all);
    }
}
