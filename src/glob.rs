//! Redis's glob-style pattern matching (`KEYS`, `SCAN MATCH`, `CONFIG GET`,
//! `COMMAND LIST FILTERBY PATTERN`): `*`, `?`, `[abc]`, `[^a]`, `[a-z]` and `\`
//! escapes, matched on bytes. Consecutive stars collapse and a failed star
//! match stops early, so a hostile pattern cannot take exponential time;
//! each star is a level of recursion, and past Redis's limit of 1,000
//! nested stars the match fails, as in Redis, instead of running the
//! thread out of stack (`KEYS` with a pattern of a million `*?` against a
//! long key aborted the process).

/// Redis's `stringmatchlen`. An empty string matches only the empty
/// pattern (Redis's loop never starts on it), so not even `*`: KEYS, SCAN
/// and the element scans treat a lone `*` as "everything" before matching,
/// as Redis does, while a `PSUBSCRIBE *` does not hear the channel "".
pub fn glob_match(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    if s.is_empty() {
        return pattern.is_empty();
    }
    matches(pattern, s, nocase, 0) == Outcome::Match
}

/// Redis's bound on nested stars (its stringmatchlen's `nesting`).
const MAX_NESTING: usize = 1000;

#[derive(PartialEq, Eq)]
enum Outcome {
    Match,
    NoMatch,
    /// The rest of the string cannot match whatever a star above absorbs.
    Abort,
}

fn eq(a: u8, b: u8, nocase: bool) -> bool {
    if nocase {
        a.eq_ignore_ascii_case(&b)
    } else {
        a == b
    }
}

fn matches(mut p: &[u8], mut s: &[u8], nocase: bool, nesting: usize) -> Outcome {
    if nesting > MAX_NESTING {
        return Outcome::NoMatch;
    }
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return Outcome::Match;
                }
                for i in 0..s.len() {
                    match matches(&p[1..], &s[i..], nocase, nesting + 1) {
                        Outcome::Match => return Outcome::Match,
                        Outcome::Abort => return Outcome::Abort,
                        Outcome::NoMatch => {}
                    }
                }
                return Outcome::Abort;
            }
            b'?' => s = &s[1..],
            b'[' => {
                p = &p[1..];
                let not = p.first() == Some(&b'^');
                if not {
                    p = &p[1..];
                }
                let mut hit = false;
                loop {
                    if p.is_empty() {
                        break;
                    }
                    if p[0] == b'\\' && p.len() >= 2 {
                        p = &p[1..];
                        if p[0] == s[0] {
                            hit = true;
                        }
                    } else if p[0] == b']' {
                        break;
                    } else if p.len() >= 3 && p[1] == b'-' {
                        let (mut lo, mut hi) = (p[0], p[2]);
                        if lo > hi {
                            std::mem::swap(&mut lo, &mut hi);
                        }
                        let c = s[0];
                        let (c, lo, hi) = if nocase {
                            (
                                c.to_ascii_lowercase(),
                                lo.to_ascii_lowercase(),
                                hi.to_ascii_lowercase(),
                            )
                        } else {
                            (c, lo, hi)
                        };
                        if c >= lo && c <= hi {
                            hit = true;
                        }
                        p = &p[2..];
                    } else if eq(p[0], s[0], nocase) {
                        hit = true;
                    }
                    p = &p[1..];
                }
                if p.is_empty() {
                    // Unterminated class: Redis treats the pattern end as its end.
                    p = b"]";
                }
                if hit == not {
                    return Outcome::NoMatch;
                }
                s = &s[1..];
            }
            b'\\' if p.len() >= 2 => {
                p = &p[1..];
                if !eq(p[0], s[0], nocase) {
                    return Outcome::NoMatch;
                }
                s = &s[1..];
            }
            c => {
                if !eq(c, s[0], nocase) {
                    return Outcome::NoMatch;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
    }
    while p.first() == Some(&b'*') {
        p = &p[1..];
    }
    if p.is_empty() && s.is_empty() {
        Outcome::Match
    } else {
        Outcome::NoMatch
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match as m;

    /// Redis's regression test: a pattern nesting 50,000 stars against a
    /// key it would match gives up (no match) instead of recursing that
    /// deep; a million would overflow the thread's stack.
    #[test]
    fn deeply_nested_stars_give_up() {
        let s = vec![b'a'; 1_000_000];
        assert!(!m(&b"*?".repeat(1_000_000), &s, false));
        assert!(!m(&b"*?".repeat(50_000), &s[..50_000], false));
        assert!(m(&b"*?".repeat(999), &s[..999], false));
    }

    #[test]
    fn redis_glob_semantics() {
        assert!(m(b"*", b"anything", false));
        assert!(m(b"h?llo", b"hello", false));
        assert!(m(b"h*llo", b"heeeello", false));
        assert!(m(b"h[ae]llo", b"hallo", false));
        assert!(!m(b"h[^e]llo", b"hello", false));
        assert!(m(b"h[a-b]llo", b"hbllo", false));
        assert!(m(b"h\\*llo", b"h*llo", false));
        assert!(!m(b"h\\*llo", b"hello", false));
        assert!(m(b"MAXMEM*", b"maxmemory", true));
        assert!(!m(b"a*b", b"a", false));
        assert!(m(b"", b"", false));
        assert!(!m(b"*", b"", false));
        assert!(!m(b"**", b"", false));
        assert!(m(b"a*", b"a", false));
        assert!(!m(b"", b"x", false));
    }

    #[test]
    fn hostile_pattern_is_fast() {
        let p = b"a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let s = vec![b'a'; 100];
        assert!(!m(p, &s, false));
    }
}
