//! Reading a server's `/metrics` (Prometheus text format), so a run can
//! report what each instance did from the instance's own counters: hint
//! messages its subscriber received, requests it answered by route.
//!
//! Only what the figures need is parsed: `name{label="v",...} value` and
//! `name value` sample lines; comments (`# HELP`, `# TYPE`) are skipped.

use std::collections::BTreeMap;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed `/metrics` page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Parses the text format; lines it does not understand are skipped
    /// (a scrape is evidence, not a contract the bench enforces).
    pub fn parse(text: &str) -> Scrape {
        Scrape {
            samples: text.lines().filter_map(parse_line).collect(),
        }
    }

    /// Whether any sample of `name` is present (a counter never
    /// incremented is absent from the exporter's output).
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }

    /// The sum of every sample of `name`, all label sets.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }

    /// The samples of `name` summed by the value of `label`.
    pub fn sum_by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.samples.iter().filter(|s| s.name == name) {
            let key = s.labels.get(label).cloned().unwrap_or_default();
            *out.entry(key).or_insert(0.0) += s.value;
        }
        out
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let close = open + line[open..].rfind('}')?;
            (
                &line[..open],
                parse_labels(&line[open + 1..close])?,
                &line[close + 1..],
            )
        }
        None => {
            let (name, rest) = line.split_once(char::is_whitespace)?;
            (name, BTreeMap::new(), rest)
        }
    };
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name: name.trim().to_string(),
        labels,
        value,
    })
}

/// `a="x",b="y \"q\""` → {a: x, b: y "q"}.
fn parse_labels(s: &str) -> Option<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(',' | ' ')) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        out.insert(key.trim().to_string(), value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# TYPE qrlogin_hint_messages_total counter
qrlogin_hint_messages_total 42
# TYPE qrlogin_http_requests_total counter
qrlogin_http_requests_total{method="POST",route="/v1/mobile/logins/{id}/scan",status="200"} 7
qrlogin_http_requests_total{method="POST",route="/v1/mobile/logins/{id}/scan",status="409"} 1
qrlogin_http_requests_total{method="GET",route="/v1/logins/{id}/events",status="200"} 3 1700000000
qrlogin_weird{a="x \"y\", z"} 1.5
garbage line
"#;

    #[test]
    fn parses_counters_with_and_without_labels() {
        let s = Scrape::parse(PAGE);
        assert!(s.has("qrlogin_hint_messages_total"));
        assert!(!s.has("qrlogin_hint_messages_unwatched_total"));
        assert_eq!(s.sum("qrlogin_hint_messages_total"), 42.0);
        assert_eq!(s.sum("qrlogin_http_requests_total"), 11.0);
        let by = s.sum_by("qrlogin_http_requests_total", "route");
        assert_eq!(by["/v1/mobile/logins/{id}/scan"], 8.0);
        assert_eq!(by["/v1/logins/{id}/events"], 3.0);
        let weird = s
            .samples
            .iter()
            .find(|x| x.name == "qrlogin_weird")
            .unwrap();
        assert_eq!(weird.labels["a"], "x \"y\", z");
        assert_eq!(weird.value, 1.5);
        assert_eq!(s.samples.len(), 5);
    }
}
