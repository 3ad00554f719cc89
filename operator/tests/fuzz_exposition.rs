#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test-only code
//! Property-based fuzzing of the Prometheus/OpenMetrics text parser the operator runs on every
//! scrape of a runtime pod (`analysis::parse`).

use std::collections::BTreeMap;

use auren_operator::analysis::exposition::{LineProblem, MAX_BYTES};
use auren_operator::analysis::{Exposition, ParseError, Sample, parse};
use proptest::prelude::*;

/// The shared fuzzing settings (`auren_testkit::fuzz_config`), failures kept in
/// `proptest-regressions/fuzz_exposition.txt`.
fn config(cases: u32) -> ProptestConfig {
    auren_testkit::fuzz_config(cases, "proptest-regressions/fuzz_exposition.txt")
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// What every successful parse guarantees, whatever the text: valid names, at most one sample
/// per line, and an error (never a panic) otherwise, naming a line that exists.
fn check_outcome(
    text: &str,
    outcome: &Result<Exposition, ParseError>,
) -> Result<(), TestCaseError> {
    match outcome {
        Ok(exposition) => {
            prop_assert!(exposition.samples.len() <= text.lines().count());
            for s in &exposition.samples {
                prop_assert!(is_metric_name(&s.name), "{s:?}");
            }
        }
        Err(ParseError::Line { line, .. }) => {
            prop_assert!(*line >= 1 && *line <= text.lines().count(), "{outcome:?}");
        }
        Err(ParseError::TooLarge(n)) => prop_assert!(*n > MAX_BYTES),
    }
    Ok(())
}

/// Text from the exposition format's own alphabet, so the parser's branches (labels, quotes,
/// escapes, exemplars, comments, `# EOF`) are reached far more often than by random unicode.
fn exposition_like_text() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "m",
        "a_b",
        ":x",
        "9",
        "{",
        "}",
        "=",
        "\"",
        "\\",
        "\\\"",
        "\\n",
        ",",
        " ",
        "\t",
        "\n",
        "\r\n",
        "#",
        "# EOF",
        "# HELP m x",
        "# TYPE m counter",
        " # ",
        "1",
        "-1.5e3",
        "+Inf",
        "-Inf",
        "NaN",
        "le",
        "=\"",
        "\"}",
        "é",
        "\u{0}",
        "\u{2028}",
        "\u{85}",
        "1700000000000",
    ]);
    prop::collection::vec(token, 0..40).prop_map(|tokens| tokens.concat())
}

fn metric_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}"
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,12}"
}

/// Label values: any unicode, with the characters the format escapes made common.
fn label_value() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec!["\"", "\\", "\n", "\\n", "} 1", " # ", "{", ",", "="]);
    prop::collection::vec(
        prop_oneof![2 => ".{0,4}", 1 => special.prop_map(String::from)],
        0..6,
    )
    .prop_map(|parts| parts.concat())
}

/// Sample values: finite numbers written plainly or with an exponent, and the specials.
#[derive(Debug, Clone)]
struct Value {
    number: f64,
    text: String,
}

fn value() -> impl Strategy<Value = Value> {
    let finite = prop_oneof![
        any::<i32>().prop_map(f64::from),
        (-1e6f64..1e6),
        prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
    ];
    let written = (finite, 0..3u8).prop_map(|(n, style)| {
        let text = match style {
            0 => format!("{n}"),
            1 => format!("{n:e}"),
            _ => format!("{n:E}"),
        };
        Value { number: n, text }
    });
    prop_oneof![
        6 => written,
        1 => Just(Value { number: f64::INFINITY, text: "+Inf".into() }),
        1 => Just(Value { number: f64::NEG_INFINITY, text: "-Inf".into() }),
        1 => Just(Value { number: f64::NAN, text: "NaN".into() }),
    ]
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

/// A metric family as a runtime pod writes it.
#[derive(Debug, Clone)]
enum Family {
    Counter {
        name: String,
        series: Vec<(Labels, Value)>,
    },
    Gauge {
        name: String,
        series: Vec<(Labels, Value)>,
    },
    Histogram {
        name: String,
        labels: Labels,
        buckets: Vec<(Value, Value)>,
        inf: Value,
        sum: Value,
        count: Value,
    },
}

type Labels = BTreeMap<String, String>;

fn labels() -> impl Strategy<Value = Labels> {
    prop::collection::btree_map(
        label_name().prop_filter("not le", |n| n != "le"),
        label_value(),
        0..4,
    )
}

fn family() -> impl Strategy<Value = Family> {
    let series = || prop::collection::vec((labels(), value()), 1..4);
    prop_oneof![
        (metric_name(), series()).prop_map(|(name, series)| Family::Counter { name, series }),
        (metric_name(), series()).prop_map(|(name, series)| Family::Gauge { name, series }),
        (
            metric_name(),
            labels(),
            prop::collection::vec((value(), value()), 0..5),
            value(),
            value(),
            value()
        )
            .prop_map(
                |(name, labels, buckets, inf, sum, count)| Family::Histogram {
                    name,
                    labels,
                    buckets,
                    inf,
                    sum,
                    count
                }
            ),
    ]
}

/// How a sample line is laid out: canonical, or with the spacing and extras the parser accepts.
#[derive(Debug, Clone, Copy)]
struct Layout {
    spaced_labels: bool,
    trailing_comma: bool,
    timestamp: Option<i64>,
    exemplar: bool,
    indent: bool,
}

/// The canonical layout, as prometheus-client writes it.
const PLAIN: Layout = Layout {
    spaced_labels: false,
    trailing_comma: false,
    timestamp: None,
    exemplar: false,
    indent: false,
};

fn layout() -> impl Strategy<Value = Layout> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::option::of(any::<i64>()),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(spaced_labels, trailing_comma, timestamp, exemplar, indent)| Layout {
                spaced_labels,
                trailing_comma,
                timestamp,
                exemplar,
                indent,
            },
        )
}

fn line(name: &str, labels: &Labels, value: &Value, layout: Layout) -> String {
    let mut out = String::new();
    if layout.indent {
        out.push_str("  ");
    }
    out.push_str(name);
    if !labels.is_empty() {
        let sep = if layout.spaced_labels { " , " } else { "," };
        let eq = if layout.spaced_labels { " = " } else { "=" };
        let pairs: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}{eq}\"{}\"", escape(v)))
            .collect();
        out.push('{');
        out.push_str(&pairs.join(sep));
        if layout.trailing_comma {
            out.push(',');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&value.text);
    if let Some(ts) = layout.timestamp {
        out.push_str(&format!(" {ts}"));
    }
    if layout.exemplar {
        out.push_str(" # {trace_id=\"a # b\"} 0.5");
    }
    out
}

/// Renders families as text and lists the samples the parser must return, in order.
fn render(
    families: &[Family],
    layouts: &[Layout],
    eof: bool,
) -> (String, Vec<(String, Labels, f64)>) {
    let mut text = String::new();
    let mut expected = Vec::new();
    let mut n = 0;
    let mut emit = |text: &mut String, name: String, labels: Labels, value: &Value| {
        let layout = layouts[n % layouts.len()];
        n += 1;
        text.push_str(&line(&name, &labels, value, layout));
        text.push('\n');
        expected.push((name, labels, value.number));
    };
    for family in families {
        match family {
            Family::Counter { name, series } => {
                text.push_str(&format!(
                    "# HELP {name} A counter with \"quotes\" and \\.\n# TYPE {name} counter\n"
                ));
                for (labels, value) in series {
                    emit(&mut text, format!("{name}_total"), labels.clone(), value);
                }
            }
            Family::Gauge { name, series } => {
                text.push_str(&format!("# TYPE {name} gauge\n"));
                for (labels, value) in series {
                    emit(&mut text, name.clone(), labels.clone(), value);
                }
            }
            Family::Histogram {
                name,
                labels,
                buckets,
                inf,
                sum,
                count,
            } => {
                text.push_str(&format!("# TYPE {name} histogram\n"));
                for (le, value) in buckets {
                    let mut with_le = labels.clone();
                    with_le.insert("le".into(), le.text.clone());
                    emit(&mut text, format!("{name}_bucket"), with_le, value);
                }
                let mut with_le = labels.clone();
                with_le.insert("le".into(), "+Inf".into());
                emit(&mut text, format!("{name}_bucket"), with_le, inf);
                emit(&mut text, format!("{name}_sum"), labels.clone(), sum);
                emit(&mut text, format!("{name}_count"), labels.clone(), count);
            }
        }
        text.push('\n');
    }
    if eof {
        text.push_str("# EOF\n");
    }
    (text, expected)
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary unicode text never panics the parser; it parses or names a line that exists.
    #[test]
    fn arbitrary_text_never_panics(text in "(?s).{0,400}") {
        check_outcome(&text, &parse(&text))?;
    }

    /// Text built from the format's own tokens never panics either, and reaches deep into
    /// label sets, escapes and exemplars.
    #[test]
    fn exposition_like_text_never_panics(text in exposition_like_text()) {
        check_outcome(&text, &parse(&text))?;
    }

    /// Generated expositions (counters, gauges, histograms with `+Inf` buckets; label values
    /// with escaped quotes, backslashes and newlines and any unicode; values written plainly, with
    /// exponents, or as +Inf/-Inf/NaN; optional spacing, timestamps, exemplars, `# EOF`) parse
    /// back to exactly the samples written, in order.
    #[test]
    fn valid_expositions_round_trip(families in prop::collection::vec(family(), 0..6),
                                    layouts in prop::collection::vec(layout(), 1..4),
                                    eof in any::<bool>()) {
        let (text, expected) = render(&families, &layouts, eof);
        let parsed = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(parsed.samples.len(), expected.len(), "{}", text);
        for (got, (name, labels, value)) in parsed.samples.iter().zip(&expected) {
            prop_assert_eq!(&got.name, name);
            prop_assert_eq!(&got.labels, labels, "{}", text);
            prop_assert!(same_value(got.value, *value), "{} != {} in\n{}", got.value, value, text);
        }
    }

    /// One generated sample line with a random cut (truncation) never panics, and a line cut
    /// inside its label set is an error, not a sample with half its labels.
    #[test]
    fn truncated_lines_are_errors_not_partial_samples(
        name in metric_name(),
        labels in labels().prop_filter("some", |l| !l.is_empty()),
        value in value(),
        cut in any::<prop::sample::Index>(),
    ) {
        let full = line(&name, &labels, &value, PLAIN);
        let boundaries: Vec<usize> =
            (0..=full.len()).filter(|i| full.is_char_boundary(*i)).collect();
        let at = *cut.get(&boundaries);
        let text = &full[..at];
        let outcome = parse(text);
        check_outcome(text, &outcome)?;
        let closing = full.rfind('}').unwrap();
        if at > name.len() && at <= closing {
            prop_assert!(outcome.is_err(), "{text:?} gave {outcome:?}");
        }
    }

    /// Content after `# EOF` is refused, whatever it is.
    #[test]
    fn content_after_eof_is_refused(before in prop::collection::vec(family(), 0..2),
                                    after in "[^\\s]{1,20}") {
        let (text, _) = render(&before, &[PLAIN], true);
        let text = format!("{text}{after}\n");
        let line = text.lines().count();
        let after_eof = ParseError::Line { line, problem: LineProblem::AfterEof };
        prop_assert_eq!(parse(&text), Err(after_eof));
    }
}

/// A sample with every special value and escape, as prometheus-client writes them: the
/// fixed example the properties above generalise.
#[test]
fn escapes_and_special_values_round_trip() {
    let text =
        "m_bucket{le=\"+Inf\",path=\"a\\\"b\\\\c\\nd\"} NaN\nm_sum -Inf\nm_count 1.5E-7\n# EOF\n";
    let samples = parse(text).unwrap().samples;
    let expected = [
        Sample {
            name: "m_bucket".into(),
            labels: [("le", "+Inf"), ("path", "a\"b\\c\nd")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value: f64::NAN,
        },
        Sample {
            name: "m_sum".into(),
            labels: BTreeMap::new(),
            value: f64::NEG_INFINITY,
        },
        Sample {
            name: "m_count".into(),
            labels: BTreeMap::new(),
            value: 1.5e-7,
        },
    ];
    assert_eq!(samples.len(), expected.len());
    for (got, want) in samples.iter().zip(&expected) {
        assert_eq!((&got.name, &got.labels), (&want.name, &want.labels));
        assert!(same_value(got.value, want.value));
    }
}
