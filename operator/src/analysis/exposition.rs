//! A parser of the Prometheus text exposition format (and the OpenMetrics text the runtime's
//! prometheus-client writes: `_total` counters, `# EOF`). It keeps samples only; `# HELP`,
//! `# TYPE` and `# UNIT` lines are not needed to compute the analysis and are skipped.
//! It never panics: any malformed sample line is a [`ParseError`] naming the line.

use std::collections::BTreeMap;

/// Largest exposition accepted (a runtime pod writes a few KiB).
pub const MAX_BYTES: usize = 4 * 1024 * 1024;

/// One sample: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// The value of a label, or `""` when it is absent (as PromQL treats it).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// All samples of one scrape, in the order they appeared.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Samples with this exact name.
    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// True when at least one sample has this name.
    pub fn has(&self, name: &str) -> bool {
        self.series(name).next().is_some()
    }
}

/// Why a scrape could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("exposition of {0} bytes is larger than the {MAX_BYTES} byte limit")]
    TooLarge(usize),
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: LineProblem },
}

/// What is wrong with a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("invalid metric name")]
    Name,
    #[error("unterminated or malformed label set")]
    Labels,
    #[error("missing value")]
    MissingValue,
    #[error("value is not a number")]
    Value,
    #[error("content after # EOF")]
    AfterEof,
}

/// Parses a whole exposition.
pub fn parse(text: &str) -> Result<Exposition, ParseError> {
    if text.len() > MAX_BYTES {
        return Err(ParseError::TooLarge(text.len()));
    }
    let mut samples = Vec::new();
    let mut eof = false;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let fail = |problem| ParseError::Line {
            line: index + 1,
            problem,
        };
        if eof && !line.is_empty() {
            return Err(fail(LineProblem::AfterEof));
        }
        if line == "# EOF" {
            eof = true;
        } else if !line.is_empty() && !line.starts_with('#') {
            samples.push(parse_sample(line).map_err(fail)?);
        }
    }
    Ok(Exposition { samples })
}

fn parse_sample(line: &str) -> Result<Sample, LineProblem> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let (name, rest) = line.split_at(name_end);
    if !is_metric_name(name) {
        return Err(LineProblem::Name);
    }
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(inside) => parse_labels(inside)?,
        None => (BTreeMap::new(), rest),
    };
    let value = parse_value(rest)?;
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    first && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `name="value",...}` and returns the labels and what follows the `}`.
fn parse_labels(mut rest: &str) -> Result<(BTreeMap<String, String>, &str), LineProblem> {
    let mut labels = BTreeMap::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or(LineProblem::Labels)?;
        let (name, after_name) = rest.split_at(eq);
        let name = name.trim();
        if !is_label_name(name) {
            return Err(LineProblem::Labels);
        }
        let quoted = after_name
            .get(1..)
            .map(str::trim_start)
            .and_then(|s| s.strip_prefix('"'));
        let (value, after_value) = parse_quoted(quoted.ok_or(LineProblem::Labels)?)?;
        labels.insert(name.to_owned(), value);
        rest = after_value.trim_start();
        match rest.strip_prefix(',') {
            Some(after_comma) => rest = after_comma,
            None if rest.starts_with('}') => {}
            None => return Err(LineProblem::Labels),
        }
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Reads an escaped label value up to its closing quote; returns it and the text after.
fn parse_quoted(text: &str) -> Result<(String, &str), LineProblem> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, text.get(at + 1..).unwrap_or(""))),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, escaped)) => value.push(escaped),
                None => return Err(LineProblem::Labels),
            },
            other => value.push(other),
        }
    }
    Err(LineProblem::Labels)
}

/// The value, ignoring an optional timestamp and an OpenMetrics exemplar (`# {...} v`).
fn parse_value(rest: &str) -> Result<f64, LineProblem> {
    let without_exemplar = rest.split(" # ").next().unwrap_or(rest);
    let text = without_exemplar
        .split_whitespace()
        .next()
        .ok_or(LineProblem::MissingValue)?;
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        number => number.parse::<f64>().map_err(|_| LineProblem::Value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What prometheus-client 0.24 writes for the runtime's metrics.
    pub const RUNTIME_TEXT: &str = r#"# HELP auren_runtime_http_requests HTTP requests.
# TYPE auren_runtime_http_requests counter
auren_runtime_http_requests_total{route="/webhooks/{device}",method="POST",status="202"} 90
auren_runtime_http_requests_total{route="/webhooks/{device}",method="POST",status="503"} 10
# HELP auren_runtime_http_request_duration_seconds Latency.
# TYPE auren_runtime_http_request_duration_seconds histogram
auren_runtime_http_request_duration_seconds_sum{route="/webhooks/{device}"} 4.5
auren_runtime_http_request_duration_seconds_count{route="/webhooks/{device}"} 100
auren_runtime_http_request_duration_seconds_bucket{le="0.05",route="/webhooks/{device}"} 80
auren_runtime_http_request_duration_seconds_bucket{le="+Inf",route="/webhooks/{device}"} 100
# TYPE auren_runtime_consumer_lag gauge
auren_runtime_consumer_lag{partition="0"} 3
# EOF
"#;

    #[test]
    fn parses_counters_histograms_and_gauges_from_prometheus_client() {
        let exposition = parse(RUNTIME_TEXT).unwrap();
        assert_eq!(exposition.samples.len(), 7);
        let first = &exposition.samples[0];
        assert_eq!(first.name, "auren_runtime_http_requests_total");
        assert_eq!(first.label("route"), "/webhooks/{device}");
        assert_eq!(first.label("status"), "202");
        assert_eq!(first.value, 90.0);
        let inf = exposition
            .samples
            .iter()
            .find(|s| s.label("le") == "+Inf")
            .unwrap();
        assert_eq!(inf.value, 100.0);
        assert!(exposition.has("auren_runtime_consumer_lag"));
        assert!(!exposition.has("auren_runtime_http_requests"));
    }

    #[test]
    fn special_values_timestamps_exemplars_and_escapes() {
        let text = concat!(
            "a +Inf\n",
            "b -Inf 1700000000000\n",
            "c NaN\n",
            "d{x=\"q\\\"uo\\\\te\\n\"} 1.5e3\n",
            "e_bucket{le=\"1\"} 4 # {trace_id=\"abc\"} 0.3 1700000000.1\n",
            "f{ a = \"1\" , b=\"2\", } 2\n",
        );
        let samples = parse(text).unwrap().samples;
        assert_eq!(samples[0].value, f64::INFINITY);
        assert_eq!(samples[1].value, f64::NEG_INFINITY);
        assert!(samples[2].value.is_nan());
        assert_eq!(samples[3].label("x"), "q\"uo\\te\n");
        assert_eq!(samples[3].value, 1500.0);
        assert_eq!(samples[4].value, 4.0);
        assert_eq!(samples[5].label("b"), "2");
        assert_eq!(samples[5].value, 2.0);
    }

    #[test]
    fn malformed_lines_are_typed_errors_with_line_numbers() {
        let cases: [(&str, usize, LineProblem); 11] = [
            ("m{a=\"1\"b=\"2\"} 1", 1, LineProblem::Labels),
            ("9bad 1", 1, LineProblem::Name),
            ("ok 1\n{a=\"b\"} 1", 2, LineProblem::Name),
            ("m{a=\"b\" 1", 1, LineProblem::Labels),
            ("m{a=b} 1", 1, LineProblem::Labels),
            ("m{a=\"b\\", 1, LineProblem::Labels),
            ("m{=\"b\"} 1", 1, LineProblem::Labels),
            ("m", 1, LineProblem::MissingValue),
            ("m{a=\"b\"}", 1, LineProblem::MissingValue),
            ("m one", 1, LineProblem::Value),
            ("m 1\n# EOF\nm 2", 3, LineProblem::AfterEof),
        ];
        for (text, line, problem) in cases {
            assert_eq!(
                parse(text),
                Err(ParseError::Line { line, problem }),
                "{text:?}"
            );
        }
    }

    #[test]
    fn junk_never_panics() {
        let junk = [
            "",
            "\n\n",
            "{",
            "}",
            "\"",
            "m{",
            "m{a",
            "m{a=",
            "m{a=\"",
            "m{a=\"é\\",
            "é 1",
            "m{é=\"1\"} 1",
            "m{a=\"1\"}}",
            "m 1 2 3 4",
            "\u{0} \u{0}",
            "# EOF",
            "m{a=\"1\"b=\"2\"} 1",
        ];
        for text in junk {
            let _ = parse(text);
        }
        assert_eq!(parse("# EOF\n\n"), Ok(Exposition::default()));
        assert!(matches!(
            parse(&"m 1\n".repeat(MAX_BYTES)),
            Err(ParseError::TooLarge(_))
        ));
    }
}
