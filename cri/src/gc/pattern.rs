//! Glob patterns of the `keep` list, matched against image names.

/// A compiled `keep` pattern: `*` matches any run of characters (`/` and `:` included), `?`
/// matches one character, and every other character matches itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepPattern {
    text: String,
    chars: Vec<char>,
}

impl KeepPattern {
    /// Compiles a pattern. Empty patterns and patterns with whitespace are rejected, because
    /// no image name contains whitespace and an empty pattern is a typo.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("it is empty".to_string());
        }
        if text.chars().any(char::is_whitespace) {
            return Err("it contains whitespace".to_string());
        }
        Ok(Self {
            text: text.to_string(),
            chars: text.chars().collect(),
        })
    }

    /// Returns the pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Returns whether `name` matches the whole pattern.
    pub fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        glob_match(&self.chars, &name)
    }
}

/// Matches with one backtracking point: the last `*` seen. Linear in practice and at worst
/// quadratic, so a long pattern cannot make a run slow.
fn glob_match(pattern: &[char], name: &[char]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, name: &str) -> bool {
        KeepPattern::parse(pattern).unwrap().matches(name)
    }

    #[test]
    fn star_matches_any_tag() {
        assert!(matches(
            "registry.k8s.io/pause:*",
            "registry.k8s.io/pause:3.10"
        ));
        assert!(matches("registry.k8s.io/pause:*", "registry.k8s.io/pause:"));
        assert!(!matches(
            "registry.k8s.io/pause:*",
            "registry.k8s.io/pause-amd64:3.1"
        ));
        assert!(!matches(
            "registry.k8s.io/pause:*",
            "docker.io/registry.k8s.io/pause:3"
        ));
    }

    #[test]
    fn star_crosses_slashes() {
        assert!(matches("registry.k8s.io/*", "registry.k8s.io/sig/etcd:3.5"));
        assert!(matches(
            "*/library/busybox:*",
            "docker.io/library/busybox:1.36"
        ));
    }

    #[test]
    fn question_mark_is_one_character() {
        assert!(matches("app:v?", "app:v1"));
        assert!(!matches("app:v?", "app:v10"));
    }

    #[test]
    fn literal_pattern_matches_exactly() {
        assert!(matches(
            "docker.io/library/nginx:1.27",
            "docker.io/library/nginx:1.27"
        ));
        assert!(!matches(
            "docker.io/library/nginx:1.27",
            "docker.io/library/nginx:1.27.1"
        ));
    }

    #[test]
    fn backtracking_finds_later_match() {
        assert!(matches("*a*b", "xaxxab"));
        assert!(!matches("*a*b", "xaxxa"));
    }

    #[test]
    fn empty_and_spaced_patterns_are_rejected() {
        assert!(KeepPattern::parse("").is_err());
        assert!(KeepPattern::parse("a b").is_err());
    }
}
