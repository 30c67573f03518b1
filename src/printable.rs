//! Text for a person's terminal: what a server sends (replies, names, greetings) reaches error
//! messages, the log and `--probe`, and must not carry control characters there. A leaf: the
//! wire layer, logging and the probe all use it.

/// `text` with every control character escaped, for a message (an error, the log, a report):
/// ESC, CR, LF, BEL, TAB and the rest of C0, DEL and C1 become `\x1b`, `\r`, `\n`, `\u{9b}`…,
/// as do the Unicode bidirectional overrides and line separators, so that what a server sends
/// cannot drive the terminal that shows the message (retitle it, clear it, rewrite a line) or
/// fake a line of its own. Borrowed when there is nothing to escape; escaping again changes
/// nothing.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| {
        c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(needs) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x80 && needs(c) => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if needs(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The last at most `max` bytes of `text`, cut at a character boundary (a local file name made
/// from a long path keeps its most telling end).
pub fn tail_bytes(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[cfg(test)]
mod tests {
    use super::printable;
    use proptest::prelude::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("plain text, ünïcode €"), "plain text, ünïcode €");
        assert!(matches!(printable("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            printable("a\x1b]0;owned\x07\x1b[2J\rb\nc\td\u{9b}31m\x7f\0e"),
            "a\\x1b]0;owned\\x07\\x1b[2J\\rb\\nc\\td\\u{9b}31m\\x7f\\x00e"
        );
        assert_eq!(printable("\u{202e}txt.exe\u{2028}"), "\\u{202e}txt.exe\\u{2028}");
    }

    proptest! {
        /// Nothing a server sends comes out of [`printable`] with a control character in it,
        /// text without any comes out unchanged, and escaping twice is escaping once.
        #[test]
        fn printable_has_no_control_characters(text in any::<String>(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for t in [text, String::from_utf8_lossy(&bytes).into_owned()] {
                let out = printable(&t);
                prop_assert!(!out.chars().any(char::is_control), "{:?} -> {:?}", t, out);
                prop_assert_eq!(printable(&out), out.clone());
                if !t.chars().any(char::is_control) && !t.contains(['\u{2028}', '\u{2029}']) && !t.chars().any(|c| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')) {
                    prop_assert_eq!(out, t.as_str());
                }
            }
        }
    }
}
