//! PowerShell-style wildcard patterns: `*` (any run), `?` (one character),
//! `[abc]`/`[a-z]` (one of a set) and a backtick escaping the next character;
//! matched case-insensitively.

/// A compiled wildcard pattern.
#[derive(Clone, Debug)]
pub struct WildcardPattern {
    tokens: Vec<Token>,
}

#[derive(Clone, Debug)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Set(Vec<(char, char)>),
}

fn fold(c: char) -> char {
    // Single-char lowercase mapping is enough for case-insensitive matching of names.
    if c.is_ascii() {
        c.to_ascii_lowercase()
    } else {
        c.to_lowercase().next().unwrap_or(c)
    }
}

impl WildcardPattern {
    /// Compiles `pattern`. An unclosed `[` is taken literally.
    pub fn new(pattern: &str) -> Self {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '*' => {
                    if !matches!(tokens.last(), Some(Token::AnyRun)) {
                        tokens.push(Token::AnyRun);
                    }
                }
                '?' => tokens.push(Token::AnyOne),
                '`' if i + 1 < chars.len() => {
                    i += 1;
                    tokens.push(Token::Literal(fold(chars[i])));
                }
                '[' => match chars[i + 1..].iter().position(|&c| c == ']') {
                    Some(len) if len > 0 => {
                        let body = &chars[i + 1..i + 1 + len];
                        let mut ranges = Vec::new();
                        let mut j = 0;
                        while j < body.len() {
                            if j + 2 < body.len() && body[j + 1] == '-' {
                                ranges.push((fold(body[j]), fold(body[j + 2])));
                                j += 3;
                            } else {
                                ranges.push((fold(body[j]), fold(body[j])));
                                j += 1;
                            }
                        }
                        tokens.push(Token::Set(ranges));
                        i += len + 1;
                    }
                    _ => tokens.push(Token::Literal('[')),
                },
                c => tokens.push(Token::Literal(fold(c))),
            }
            i += 1;
        }
        WildcardPattern { tokens }
    }

    /// Whether `text` matches the whole pattern, ignoring case.
    pub fn is_match(&self, text: &str) -> bool {
        // Folded into a buffer on the stack when it fits (names and commands almost
        // always do): a listing matches every job, and an allocation each was most of it.
        let mut inline = ['\0'; 128];
        let heap: Vec<char>;
        let text: &[char] = if text.len() <= inline.len() {
            let mut n = 0;
            for c in text.chars() {
                inline[n] = fold(c);
                n += 1;
            }
            &inline[..n]
        } else {
            heap = text.chars().map(fold).collect();
            &heap
        };
        let (mut t, mut p) = (0usize, 0usize);
        // Classic greedy matcher with one backtrack point for the last `*`.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            let step = match self.tokens.get(p) {
                Some(Token::Literal(c)) => *c == text[t],
                Some(Token::AnyOne) => true,
                Some(Token::Set(r)) => r.iter().any(|&(lo, hi)| lo <= text[t] && text[t] <= hi),
                Some(Token::AnyRun) => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                None => false,
            };
            if step {
                t += 1;
                p += 1;
            } else if let Some((sp, st)) = star {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        self.tokens[p..].iter().all(|t| matches!(t, Token::AnyRun))
    }
}

#[cfg(test)]
mod tests {
    use super::WildcardPattern as W;

    #[test]
    fn matches_like_powershell() {
        assert!(W::new("Job*").is_match("job12"));
        assert!(W::new("*").is_match(""));
        assert!(W::new("j?b").is_match("JOB"));
        assert!(!W::new("j?b").is_match("jb"));
        assert!(W::new("a*b*c").is_match("aXXbYYc"));
        assert!(!W::new("a*b*c").is_match("aXXbYY"));
        assert!(W::new("*.txt").is_match("a.b.TXT"));
        assert!(W::new("[a-c]x").is_match("Bx"));
        assert!(!W::new("[a-c]x").is_match("dx"));
        assert!(W::new("`*lit").is_match("*lit"));
        assert!(!W::new("`*lit").is_match("xlit"));
        assert!(W::new("[").is_match("["));
        assert!(W::new("ÄBC*").is_match("äbcd"));
        assert!(!W::new("abc").is_match("abcd"));
    }
}
