//! Structured Field Dictionaries (RFC 8941 §3.2, parsed as §4.2.2 says): what targeted
//! cache-control fields are (RFC 9213 §2.1). Strict, as the RFC requires: a field that does
//! not parse is invalid as a whole, and its recipient ignores it (§4.2).
//!
//! Only what a cache directive can be is kept of a member's value: a Boolean, an Integer,
//! a String or a Token. Decimals, Byte Sequences and Inner Lists are parsed (so that a
//! field holding them is still valid) and kept as [`Bare::Other`]; parameters are parsed and
//! dropped.

use http::HeaderValue;

/// The value of a Dictionary member, as far as cache directives go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Bare {
    /// `?1` / `?0`, or a member without a value (true).
    Boolean(bool),
    /// An Integer (at most 15 digits).
    Integer(i64),
    /// A String, unescaped.
    String(String),
    /// A Token.
    Token(String),
    /// A Decimal, a Byte Sequence or an Inner List: valid, but no cache directive's value.
    Other,
}

/// A parsed Dictionary: its members in order, a later duplicate key replacing the earlier
/// member in place (RFC 8941 §4.2.2).
pub(crate) type Dictionary = Vec<(String, Bare)>;

/// The most members a Dictionary may have here: a cache-control field has a handful, and a
/// bound keeps a hostile one (up to the size of the response head) from costing more than
/// a linear pass. More makes the field invalid, hence ignored.
const MAX_MEMBERS: usize = 64;

/// Parses the lines of one field as a Dictionary (lines joined with `,`, RFC 8941 §4.2);
/// `None` when it is not one (the field is then ignored as a whole). An empty field is an
/// empty Dictionary.
pub(crate) fn parse_dictionary<'a>(
    lines: impl IntoIterator<Item = &'a HeaderValue>,
) -> Option<Dictionary> {
    let mut input = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        if i > 0 {
            input.push(b',');
        }
        input.extend_from_slice(line.as_bytes());
    }
    let mut p = Parser {
        input: &input,
        at: 0,
    };
    p.skip_sp();
    let dict = p.dictionary()?;
    p.skip_sp();
    p.done().then_some(dict)
}

struct Parser<'a> {
    input: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.at += 1;
        }
        hit
    }

    fn done(&self) -> bool {
        self.at == self.input.len()
    }

    fn skip_sp(&mut self) {
        while self.eat(b' ') {}
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// §4.2.2.
    fn dictionary(&mut self) -> Option<Dictionary> {
        let mut members: Dictionary = Vec::new();
        while !self.done() {
            let key = self.key()?;
            let value = if self.eat(b'=') {
                self.item_or_inner_list()?
            } else {
                self.parameters()?;
                Bare::Boolean(true)
            };
            let full = members.len() == MAX_MEMBERS;
            match members.iter_mut().find(|(k, _)| *k == key) {
                Some(existing) => existing.1 = value,
                None if full => return None,
                None => members.push((key, value)),
            }
            self.skip_ows();
            if self.done() {
                return Some(members);
            }
            if !self.eat(b',') {
                return None;
            }
            self.skip_ows();
            if self.done() {
                return None; // a trailing comma
            }
        }
        Some(members)
    }

    /// §4.2.3.3: `lcalpha / "*"`, then `lcalpha / DIGIT / "_" / "-" / "." / "*"`.
    fn key(&mut self) -> Option<String> {
        let start = self.at;
        match self.peek()? {
            b'a'..=b'z' | b'*' => self.at += 1,
            _ => return None,
        }
        while matches!(
            self.peek(),
            Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')
        ) {
            self.at += 1;
        }
        Some(String::from_utf8_lossy(&self.input[start..self.at]).into_owned())
    }

    fn item_or_inner_list(&mut self) -> Option<Bare> {
        if self.peek() == Some(b'(') {
            self.inner_list()?;
            return Some(Bare::Other);
        }
        let bare = self.bare_item()?;
        self.parameters()?;
        Some(bare)
    }

    /// §4.2.1.2.
    fn inner_list(&mut self) -> Option<()> {
        self.eat(b'(');
        loop {
            self.skip_sp();
            if self.eat(b')') {
                return self.parameters();
            }
            self.bare_item()?;
            self.parameters()?;
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return None;
            }
        }
    }

    /// §4.2.3.2.
    fn parameters(&mut self) -> Option<()> {
        while self.eat(b';') {
            self.skip_sp();
            self.key()?;
            if self.eat(b'=') {
                self.bare_item()?;
            }
        }
        Some(())
    }

    /// §4.2.3.1.
    fn bare_item(&mut self) -> Option<Bare> {
        match self.peek()? {
            b'-' | b'0'..=b'9' => self.number(),
            b'"' => self.string().map(Bare::String),
            b'*' | b'a'..=b'z' | b'A'..=b'Z' => Some(Bare::Token(self.token())),
            b':' => self.byte_sequence().map(|()| Bare::Other),
            b'?' => self.boolean().map(Bare::Boolean),
            _ => None,
        }
    }

    /// §4.2.4: an Integer of at most 15 digits, or a Decimal of at most 12 integer and 3
    /// fractional digits.
    fn number(&mut self) -> Option<Bare> {
        let negative = self.eat(b'-');
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        let int_digits = self.at - start;
        if int_digits == 0 {
            return None;
        }
        if self.eat(b'.') {
            let frac_start = self.at;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.at += 1;
            }
            let frac_digits = self.at - frac_start;
            return (int_digits <= 12 && (1..=3).contains(&frac_digits)).then_some(Bare::Other);
        }
        if int_digits > 15 {
            return None;
        }
        let digits = std::str::from_utf8(&self.input[start..self.at]).ok()?;
        let n: i64 = digits.parse().ok()?;
        Some(Bare::Integer(if negative { -n } else { n }))
    }

    /// §4.2.5: printable ASCII, with `\"` and `\\` the only escapes.
    fn string(&mut self) -> Option<String> {
        self.eat(b'"');
        let mut out = String::new();
        loop {
            match self.peek()? {
                b'\\' => {
                    self.at += 1;
                    match self.peek()? {
                        c @ (b'"' | b'\\') => out.push(char::from(c)),
                        _ => return None,
                    }
                }
                b'"' => {
                    self.at += 1;
                    return Some(out);
                }
                c @ 0x20..=0x7e => out.push(char::from(c)),
                _ => return None,
            }
            self.at += 1;
        }
    }

    /// §4.2.6: `( ALPHA / "*" ) *( tchar / ":" / "/" )`.
    fn token(&mut self) -> String {
        let start = self.at;
        self.at += 1;
        while self
            .peek()
            .is_some_and(|c| is_tchar(c) || c == b':' || c == b'/')
        {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.input[start..self.at]).into_owned()
    }

    /// §4.2.7: `:` base64 `:`.
    fn byte_sequence(&mut self) -> Option<()> {
        self.eat(b':');
        while let Some(c) = self.peek() {
            self.at += 1;
            match c {
                b':' => return Some(()),
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' | b'=' => {}
                _ => return None,
            }
        }
        None
    }

    /// §4.2.8: `?0` or `?1`.
    fn boolean(&mut self) -> Option<bool> {
        self.eat(b'?');
        let value = match self.peek()? {
            b'1' => true,
            b'0' => false,
            _ => return None,
        };
        self.at += 1;
        Some(value)
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&'static str]) -> Option<Dictionary> {
        let values: Vec<HeaderValue> = lines.iter().map(|l| HeaderValue::from_static(l)).collect();
        parse_dictionary(&values)
    }

    #[test]
    fn members_of_every_kind() {
        let d = parse(&["max-age=60, no-store, private=\"set-cookie\", a=?0, t=tok/en:1"]).unwrap();
        assert_eq!(
            d,
            vec![
                ("max-age".into(), Bare::Integer(60)),
                ("no-store".into(), Bare::Boolean(true)),
                ("private".into(), Bare::String("set-cookie".into())),
                ("a".into(), Bare::Boolean(false)),
                ("t".into(), Bare::Token("tok/en:1".into())),
            ]
        );
        let d = parse(&["x=1.5, y=:AQID:, z=(1 2);p, n=-3;q=\"v\""]).unwrap();
        assert_eq!(d[0].1, Bare::Other);
        assert_eq!(d[1].1, Bare::Other);
        assert_eq!(d[2].1, Bare::Other);
        assert_eq!(d[3].1, Bare::Integer(-3));
    }

    #[test]
    fn lines_join_and_a_later_key_replaces_the_earlier_one_in_place() {
        let d = parse(&["max-age=60, public", "max-age=10"]).unwrap();
        assert_eq!(
            d,
            vec![
                ("max-age".into(), Bare::Integer(10)),
                ("public".into(), Bare::Boolean(true)),
            ]
        );
        assert_eq!(parse(&[""]), Some(Vec::new()));
    }

    /// Anything that is not a Dictionary makes the whole field invalid.
    #[test]
    fn invalid_fields_are_rejected_as_a_whole() {
        for bad in [
            "Max-Age=60",        // keys are lower-case
            "max-age=60,",       // trailing comma
            "max-age=60;",       // a parameter without a key
            "max-age=",          // no value
            "max-age=60 public", // no comma
            "a=\"unterminated",
            "a=\"bad \\n escape\"",
            "a=1234567890123456", // 16 digits
            "a=1.2345",           // 4 fractional digits
            "a=?2",
            "a=:not base64!:",
            "a=(1 2",
            "a=@",
            ",a",
            "max-age=60, ,public",
        ] {
            assert_eq!(parse(&[bad]), None, "{bad:?}");
        }
    }

    #[test]
    fn too_many_members_make_it_invalid() {
        let many: Vec<String> = (0..=MAX_MEMBERS).map(|i| format!("k{i}")).collect();
        let line = HeaderValue::from_str(&many.join(", ")).unwrap();
        assert_eq!(parse_dictionary([&line]), None);
        let enough = HeaderValue::from_str(&many[..MAX_MEMBERS].join(", ")).unwrap();
        assert_eq!(
            parse_dictionary([&enough]).map(|d| d.len()),
            Some(MAX_MEMBERS)
        );
    }

    #[test]
    fn whitespace_rules() {
        assert!(
            parse(&["  a=1 ,\tb"]).is_some(),
            "SP before, OWS around commas"
        );
        assert!(parse(&["a=1  "]).is_some(), "SP after");
        assert!(
            parse(&["\ta=1"]).is_none(),
            "no HTAB before the first member"
        );
        assert!(parse(&["a = 1"]).is_none(), "no space around =");
    }
}
