//! How filters and `-itsoffset` move an output stream's timeline: the part of
//! [`ExpectedLength`](super::ExpectedLength) that reads filter graphs.
//!
//! A stream's timeline is a [`Span`] of output timestamps in seconds; ffmpeg's `out_time` ends
//! at the largest `end` over an output's streams. What each filter does to it follows the
//! filter's code in ffmpeg 5.1 (`libavfilter/`), checked against real runs:
//!
//! - `setpts`/`asetpts` with a constant factor (`PTS/5`, `0.5*PTS`, `PTS*2`, `(PTS-STARTPTS)/2`,
//!   `PTS-STARTPTS`): timestamps scaled (and moved to 0); any other expression: unknown.
//! - `atempo=T`: the span's length divided by `T`; `asetrate=R`: multiplied by the input
//!   sample rate over `R` (the rate comes from the banner, or an earlier `aresample=R` /
//!   `asetrate=R` in the chain; unknown otherwise).
//! - `trim`/`atrim` (`start`, `end`, `duration`, in seconds; the other limits make it unknown):
//!   timestamps are kept, so the span is cut, not moved (`trim=1:3` ends at 3 s).
//! - `concat=n=N`: the segments one after another: the sum of each segment's longest stream.
//! - Other filters with several inputs (`overlay`, `amix`, `hstack`, ...): the longest input,
//!   or the shortest with `shortest=1` (`amix`: its `duration` option).
//! - Filters that add time without a bound the graph states (`apad`, `tpad`, `loop`, `aloop`,
//!   `adelay`, `reverse`, `areverse`) or drop frames by content (`select`) are unknown; a source filter
//!   (`testsrc`, `color`, `anullsrc`, ...) lasts its `d`/`duration` option, else it is unknown.
//! - Every other filter keeps the timeline.

use crate::filtergraph::{Filter, FilterArg, FilterGraph};

use super::parse_time_duration;

/// A stream's output timestamps, in seconds: from `start` to `end`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Span {
    pub(super) start: f64,
    pub(super) end: f64,
}

/// A stream on its way through a graph: its span (`None`: unknown) and, for audio, its sample
/// rate in Hz if known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Flow {
    pub(super) span: Option<Span>,
    pub(super) rate: Option<f64>,
}

impl Flow {
    pub(super) const UNKNOWN: Flow = Flow { span: None, rate: None };
}

/// Filters that add time by an amount the graph alone does not bound.
const UNBOUNDED: &[&str] = &["apad", "tpad", "loop", "aloop", "adelay", "reverse", "areverse", "afifo", "fifo"];

/// Filters with inputs that do not pass on their input timeline: unknown.
const UNMODELLED: &[&str] = &["select", "aselect"];

/// Applies one filter with one input (a chain step) to `flow`.
pub(super) fn single(filter: &Filter, flow: Flow) -> Flow {
    let name = filter.name.as_str();
    let Some(span) = flow.span else { return Flow { span: None, rate: new_rate(filter).or(flow.rate) } };
    let scaled = |factor: Option<f64>| {
        factor
            .filter(|f| f.is_finite() && *f > 0.0)
            .map(|f| Span { start: span.start, end: span.start + (span.end - span.start) * f })
    };
    match name {
        "setpts" | "asetpts" => {
            let expr = filter.arg("expr", Some(0)).unwrap_or("PTS");
            Flow { span: setpts(expr, span), rate: flow.rate }
        }
        "atempo" => {
            let tempo = filter.arg("tempo", Some(0)).map_or(Some(1.0), |t| t.trim().parse::<f64>().ok());
            Flow { span: scaled(tempo.map(|t| 1.0 / t)), rate: flow.rate }
        }
        "asetrate" => {
            let to = new_rate(filter);
            let factor = match (flow.rate, to) {
                (Some(from), Some(to)) => Some(from / to),
                _ => None,
            };
            Flow { span: scaled(factor), rate: to }
        }
        "aresample" => Flow { span: Some(span), rate: new_rate(filter).or(flow.rate) },
        "trim" | "atrim" => Flow { span: trim(filter, span), rate: flow.rate },
        _ if UNBOUNDED.contains(&name) || UNMODELLED.contains(&name) => Flow { span: None, rate: flow.rate },
        _ => flow,
    }
}

/// Applies a filter with several (or no) inputs: `concat`, a mixer, or a source.
pub(super) fn multiple(filter: &Filter, inputs: &[Flow]) -> Flow {
    let name = filter.name.as_str();
    if inputs.is_empty() {
        // A source: `testsrc=d=3`, `anullsrc=duration=2` ... else endless (unknown).
        let duration = filter.arg("duration", None).or_else(|| filter.arg("d", None)).and_then(parse_time_duration);
        let rate = filter.arg("sample_rate", None).or_else(|| filter.arg("r", None)).and_then(|r| r.parse().ok());
        let span = duration.filter(|d| *d >= 0.0).map(|d| Span { start: 0.0, end: d });
        return Flow { span, rate };
    }
    if let [one] = inputs {
        return single(filter, *one);
    }
    let rate = inputs.iter().find_map(|f| f.rate);
    if name == "concat" {
        // `n` segments of `v` video and `a` audio streams each (defaults 2, 1, 0).
        let count = |key: &str, default: usize| filter.arg(key, None).map_or(Some(default), |v| v.trim().parse().ok());
        let (Some(segments), Some(v), Some(a)) = (count("n", 2), count("v", 1), count("a", 0)) else {
            return Flow::UNKNOWN;
        };
        let per_segment = v + a;
        if per_segment == 0 || segments.checked_mul(per_segment) != Some(inputs.len()) {
            return Flow::UNKNOWN;
        }
        let mut total = 0.0;
        for segment in inputs.chunks(per_segment) {
            let mut longest: f64 = 0.0;
            for flow in segment {
                let Some(span) = flow.span else { return Flow { span: None, rate } };
                longest = longest.max(span.end);
            }
            total += longest;
        }
        return Flow { span: Some(Span { start: 0.0, end: total }), rate };
    }
    let spans: Option<Vec<Span>> = inputs.iter().map(|f| f.span).collect();
    let Some(spans) = spans else { return Flow { span: None, rate } };
    let shortest = match name {
        "amix" => match filter.arg("duration", None) {
            Some("shortest") => Some(true),
            Some("first") => return Flow { span: Some(spans[0]), rate },
            _ => Some(false),
        },
        _ => filter.arg("shortest", None).map(|v| matches!(v, "1" | "true" | "yes" | "on" | "y")),
    };
    let start = spans.iter().map(|s| s.start).fold(f64::INFINITY, f64::min);
    let ends = spans.iter().map(|s| s.end);
    let end = if shortest == Some(true) { ends.fold(f64::INFINITY, f64::min) } else { ends.fold(0.0, f64::max) };
    Flow { span: Some(Span { start, end }), rate }
}

/// The sample rate a filter sets: `aresample=48000` / `osr=`, `asetrate=44100` / `r=`.
fn new_rate(filter: &Filter) -> Option<f64> {
    let value = match filter.name.as_str() {
        "aresample" => filter
            .arg("osr", None)
            .or_else(|| filter.arg("out_sample_rate", None))
            .or_else(|| filter.arg("sample_rate", Some(0))),
        "asetrate" => filter.arg("sample_rate", Some(0)).or_else(|| filter.arg("r", None)),
        _ => None,
    }?;
    value.trim().parse::<f64>().ok().filter(|r| r.is_finite() && *r > 0.0)
}

/// `trim`/`atrim` with `start`, `end` and `duration` in seconds (positionally `start:end`).
fn trim(filter: &Filter, span: Span) -> Option<Span> {
    const OTHER_LIMITS: &[&str] = &[
        "start_pts",
        "end_pts",
        "start_frame",
        "end_frame",
        "start_sample",
        "end_sample",
        "starti",
        "endi",
        "durationi",
    ];
    let named = |key: &str| filter.args.iter().any(|a| matches!(a, FilterArg::Named { key: k, .. } if k == key));
    if OTHER_LIMITS.iter().any(|k| named(k)) {
        return None;
    }
    let time = |key: &str, position: Option<usize>| match filter.arg(key, position) {
        Some(v) => parse_time_duration(v).map(Some),
        None => Some(None),
    };
    let start = time("start", Some(0))?;
    let end = time("end", Some(1))?;
    let duration = time("duration", None)?;
    let from = start.map_or(span.start, |s| s.max(span.start));
    let mut to = end.map_or(span.end, |e| e.min(span.end));
    if let Some(d) = duration {
        to = to.min(from + d.max(0.0));
    }
    Some(Span { start: from, end: to.max(from) })
}

/// `setpts` with a constant factor: a product of numbers and one `PTS` (or `PTS-STARTPTS`,
/// which moves the start to 0), with `*` and `/`; `None` for every other expression.
fn setpts(expr: &str, span: Span) -> Option<Span> {
    let text: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
    let (body, reset) = if text == "PTS-STARTPTS" {
        ("PTS".to_owned(), true)
    } else if text.contains("(PTS-STARTPTS)") {
        (text.replace("(PTS-STARTPTS)", "PTS"), true)
    } else {
        (text, false)
    };
    let factor = pts_factor(&body)?;
    let span = if reset { Span { start: 0.0, end: span.end - span.start } } else { span };
    Some(Span { start: span.start * factor, end: span.end * factor })
}

/// `a*PTS/b...`: factors joined by `*` and `/`, exactly one of them `PTS` (not a divisor), the
/// others positive numbers; the factor `PTS` is multiplied by.
fn pts_factor(body: &str) -> Option<f64> {
    let (mut factor, mut seen_pts, mut divide) = (1.0, false, false);
    let mut rest = body;
    loop {
        let end = rest.find(['*', '/']).unwrap_or(rest.len());
        let term = &rest[..end];
        if term == "PTS" {
            if seen_pts || divide {
                return None;
            }
            seen_pts = true;
        } else {
            let value: f64 = term.parse().ok().filter(|v: &f64| v.is_finite() && *v > 0.0)?;
            if divide { factor /= value } else { factor *= value }
        }
        if end == rest.len() {
            break;
        }
        divide = rest.as_bytes()[end] == b'/';
        rest = &rest[end + 1..];
    }
    seen_pts.then_some(factor)
}

/// Filters that make frames from nothing (no input pad): they start a chain without a label.
fn is_source(name: &str) -> bool {
    name.ends_with("src")
        || matches!(
            name,
            "color"
                | "sine"
                | "smptebars"
                | "smptehdbars"
                | "pal75bars"
                | "pal100bars"
                | "mandelbrot"
                | "life"
                | "cellauto"
                | "gradients"
                | "sierpinski"
                | "allrgb"
                | "allyuv"
                | "flite"
                | "hilbert"
                | "sinc"
                | "movie"
                | "amovie"
                | "zoneplate"
        )
}

/// The flows out of a graph: of its labelled outputs, and of its unlabelled ones in order.
#[derive(Debug, Clone, Default)]
pub(super) struct GraphFlows {
    pub(super) labeled: Vec<(String, Flow)>,
    pub(super) unlabeled: Vec<Flow>,
}

/// Evaluates `graph`: `input(label)` gives the flow of a label no filter of the graph
/// produces (an input stream, `0:v`); `first` the flow into an unlabelled first filter that is
/// not a source (the stream of a `-vf`/`-af` graph; for `-filter_complex`, the only input's).
pub(super) fn evaluate(graph: &FilterGraph, input: &dyn Fn(&str) -> Flow, first: Flow) -> GraphFlows {
    let eval = Evaluator { graph, input, first, steps: std::cell::Cell::new(0) };
    let mut flows = GraphFlows::default();
    for (c, chain) in graph.chains.iter().enumerate() {
        let Some(last) = chain.filters.len().checked_sub(1) else { continue };
        for (f, filter) in chain.filters.iter().enumerate() {
            if filter.outputs.is_empty() && f == last {
                flows.unlabeled.push(eval.filter(c, f, 0));
            }
            for label in &filter.outputs {
                flows.labeled.push((label.clone(), eval.filter(c, f, 0)));
            }
        }
    }
    flows
}

/// Graphs nest at most this deep (a label feeding a label ...); deeper is unknown.
const MAX_DEPTH: usize = 64;

struct Evaluator<'a> {
    graph: &'a FilterGraph,
    input: &'a dyn Fn(&str) -> Flow,
    first: Flow,
    /// Filters evaluated so far: a graph that reuses labels many times over (each
    /// evaluation is not remembered) gives up as unknown past [`MAX_STEPS`].
    steps: std::cell::Cell<usize>,
}

/// Most filter evaluations per graph.
const MAX_STEPS: usize = 10_000;

impl Evaluator<'_> {
    /// The flow out of filter `f` of chain `c`.
    fn filter(&self, c: usize, f: usize, depth: usize) -> Flow {
        self.steps.set(self.steps.get() + 1);
        if depth > MAX_DEPTH || self.steps.get() > MAX_STEPS {
            return Flow::UNKNOWN;
        }
        let filter = &self.graph.chains[c].filters[f];
        let mut inputs: Vec<Flow> = filter.inputs.iter().map(|label| self.label(label, depth + 1)).collect();
        if f > 0 && self.graph.chains[c].filters[f - 1].outputs.is_empty() {
            // The previous filter's unlabelled output feeds this one's first unlabelled input.
            inputs.insert(0, self.filter(c, f - 1, depth + 1));
        } else if f == 0 && inputs.is_empty() && !is_source(&filter.name) {
            inputs.push(self.first);
        }
        multiple(filter, &inputs)
    }

    /// The flow of link label `label`: a filter's output in the graph, else an input stream.
    fn label(&self, label: &str, depth: usize) -> Flow {
        for (c, chain) in self.graph.chains.iter().enumerate() {
            for (f, filter) in chain.filters.iter().enumerate() {
                if filter.outputs.iter().any(|o| o == label) {
                    return self.filter(c, f, depth);
                }
            }
        }
        (self.input)(label)
    }
}
