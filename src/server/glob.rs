//! Redis's glob patterns (`stringmatchlen` in `util.c`) for KEYS, SCAN MATCH and CONFIG GET:
//! `*`, `?`, `[abc]`, `[^a-z]`, and `\` escapes.

/// True when `text` matches `pattern`.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative with one backtrack point for the last `*`, linear in practice and never
    // exponential (Redis's recursive matcher has a nesting limit for the same reason).
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, t));
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    let (matched, next) = match_class(pattern, p, text[t]);
                    if matched {
                        p = next;
                        t += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == text[t] {
                        p += 2;
                        t += 1;
                        continue;
                    }
                }
                c => {
                    if c == text[t] {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the class opening at `pattern[open] == b'['`. Returns whether it matched
/// and the index after the class. As Redis's `stringmatchlen`: `\\` escapes the next byte, `x-y`
/// is a range whatever `y` is (in `[a-]` the range ends at `]`, which then does not close the
/// class), either end may come first, and a class left open ends with the pattern.
fn match_class(pattern: &[u8], open: usize, c: u8) -> (bool, usize) {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    loop {
        match pattern[i..] {
            [b'\\', escaped, ..] => {
                matched |= escaped == c;
                i += 2;
            }
            [b']', ..] => return (matched != negate, i + 1),
            [] => return (matched != negate, i),
            [from, b'-', to, ..] => {
                matched |= (from.min(to)..=from.max(to)).contains(&c);
                i += 3;
            }
            [literal, ..] => {
                matched |= literal == c;
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_like_redis() {
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"user:*", b"user:42"));
        assert!(!glob_match(b"user:*", b"session:1"));
        assert!(glob_match(b"h?llo", b"hallo"));
        assert!(glob_match(b"h[ae]llo", b"hello"));
        assert!(!glob_match(b"h[^e]llo", b"hello"));
        assert!(glob_match(b"h[a-b]llo", b"hbllo"));
        assert!(glob_match(b"a\\*b", b"a*b"));
        assert!(!glob_match(b"a\\*b", b"axb"));
        assert!(glob_match(b"*a*b*", b"xxaxxbxx"));
        assert!(!glob_match(b"*a*b", b"xxaxxbxxc"));
    }

    /// The corners of Redis's `stringmatchlen` (util.c), each checked against redis-server
    /// 7.0.15 with `KEYS`.
    #[test]
    fn classes_follow_redis_in_their_corners() {
        // `a-]` is a range from `]` to `a`; the class then runs on to the end of the pattern.
        for key in ["hallo", "h-llo", "h]llo"] {
            assert!(!glob_match(b"h[a-]llo", key.as_bytes()), "{key}");
        }
        for key in ["ha", "h]", "h_", "hl", "ho"] {
            assert!(glob_match(b"h[a-]llo", key.as_bytes()), "{key}");
        }
        assert!(!glob_match(b"h[a-]llo", b"h-"));
        // A class left open ends with the pattern.
        assert!(glob_match(b"[^", b"x"));
        assert!(!glob_match(b"[^", b"xy"));
        assert!(!glob_match(b"[^", b""));
        assert!(glob_match(b"[\\]", b"]"));
        assert!(!glob_match(b"[\\]", b"\\"));
        assert!(glob_match(b"x[ab", b"xb"));
        assert!(!glob_match(b"[", b"["));
        assert!(!glob_match(b"[", b""));
        // Reversed ranges, escapes inside a class, a lone trailing backslash.
        assert!(glob_match(b"[z-a]", b"m"));
        assert!(glob_match(b"[\\-]", b"-"));
        assert!(glob_match(b"a\\", b"a\\"));
    }
}
