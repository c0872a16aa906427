//! The vocabulary of a parity case: what its targets answer scrape after scrape, the job
//! settings both agents get, and how its result is judged.
//!
//! A case is data only. `config.rs` turns it into prometheus.yml and scrapewheel's TOML
//! (from the same JSON tree, so the two cannot drift), `server.rs` serves its scripts and
//! `compare.rs` judges what the two agents sent.

use serde_json::{Map, Value};
use std::time::Duration;

/// What a target answers to the n-th request from one agent.
#[derive(Clone, Debug)]
pub enum Step {
    /// An HTTP response, sent after `delay` (a delay over the scrape timeout is a timeout).
    Reply {
        status: u16,
        content_type: Option<String>,
        body: String,
        gzip: bool,
        delay: Duration,
    },
    /// 200, text format, one series describing the request: path, query and the
    /// `X-Prometheus-Scrape-Timeout-Seconds` header, so URL building is compared too.
    Echo,
    /// The connection is closed without a response.
    Close,
}

pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A 200 text-format reply. Bodies may hold `{T+N}` (an explicit timestamp, ms) and
/// `{Ts+N}` (the same in OpenMetrics seconds), resolved against the suite's base time.
pub fn text(body: &str) -> Step {
    reply(200, Some(TEXT), body)
}

pub fn om(body: &str) -> Step {
    reply(200, Some(OPENMETRICS), body)
}

pub fn reply(status: u16, content_type: Option<&str>, body: &str) -> Step {
    Step::Reply {
        status,
        content_type: content_type.map(str::to_string),
        body: body.to_string(),
        gzip: false,
        delay: Duration::ZERO,
    }
}

pub fn status(code: u16) -> Step {
    reply(code, Some("text/plain"), "error\n")
}

/// A text reply sent only after `ms`: longer than the scrape timeout, it is a timeout.
pub fn hang(ms: u64, body: &str) -> Step {
    match text(body) {
        Step::Reply {
            status,
            content_type,
            body,
            gzip,
            ..
        } => Step::Reply {
            status,
            content_type,
            body,
            gzip,
            delay: Duration::from_millis(ms),
        },
        other => other,
    }
}

pub fn gzip(step: Step) -> Step {
    match step {
        Step::Reply {
            status,
            content_type,
            body,
            delay,
            ..
        } => Step::Reply {
            status,
            content_type,
            body,
            gzip: true,
            delay,
        },
        other => other,
    }
}

/// Closes the target's listener once both agents have made `after` requests, keeps it
/// closed for `window` (so connecting is refused), then listens again on the same port.
#[derive(Clone, Copy, Debug)]
pub struct Refuse {
    pub after: u64,
    pub window: Duration,
    /// Requests each agent must make after the window before the case is complete.
    pub recover_requests: u64,
}

/// Where a target is.
#[derive(Clone, Debug)]
pub enum Addr {
    /// A loopback script server started for the suite.
    Served,
    /// A literal `__address__` (nothing of ours listens there).
    Fixed(&'static str),
}

#[derive(Clone, Debug)]
pub struct TargetSpec {
    pub addr: Addr,
    /// The static_config group's labels.
    pub labels: Vec<(String, String)>,
    pub script: Vec<Step>,
    pub refuse: Option<Refuse>,
}

/// A served target that answers `script` (the last step repeats).
pub fn target(script: Vec<Step>) -> TargetSpec {
    TargetSpec {
        addr: Addr::Served,
        labels: Vec::new(),
        script,
        refuse: None,
    }
}

impl TargetSpec {
    pub fn label(mut self, name: &str, value: &str) -> Self {
        self.labels.push((name.to_string(), value.to_string()));
        self
    }

    pub fn refuse(mut self, r: Refuse) -> Self {
        self.refuse = Some(r);
        self
    }
}

/// A relabel rule; unset keys are left out of both configs so defaults are exercised.
#[derive(Clone, Debug, Default)]
pub struct Rule(pub Map<String, Value>);

pub fn rule() -> Rule {
    Rule::default()
}

impl Rule {
    pub fn source(mut self, labels: &[&str]) -> Self {
        self.0.insert(
            "source_labels".into(),
            Value::Array(labels.iter().map(|l| Value::from(*l)).collect()),
        );
        self
    }
    pub fn separator(self, s: &str) -> Self {
        self.set("separator", s)
    }
    pub fn regex(self, s: &str) -> Self {
        self.set("regex", s)
    }
    pub fn target(self, s: &str) -> Self {
        self.set("target_label", s)
    }
    pub fn replacement(self, s: &str) -> Self {
        self.set("replacement", s)
    }
    pub fn action(self, s: &str) -> Self {
        self.set("action", s)
    }
    pub fn modulus(mut self, m: u64) -> Self {
        self.0.insert("modulus".into(), Value::from(m));
        self
    }
    fn set(mut self, key: &str, v: &str) -> Self {
        self.0.insert(key.into(), Value::from(v));
        self
    }
}

/// How the two agents' scrapes are lined up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Scrape k of one agent against scrape k of the other, for the first `scrapes`.
    Exact,
    /// Runs of identical scrapes collapse to one before comparing: for targets whose
    /// behaviour follows the clock rather than the request count (a refused connection
    /// cannot be counted by the target).
    Collapsed,
}

/// An expected difference and its reason.
#[derive(Clone, Copy, Debug)]
pub enum Known {
    /// Behaviour a later Prometheus changed (the reason starts with that version);
    /// scrapewheel follows current Prometheus 3.x.
    Newer(&'static str),
    /// scrapewheel differs on purpose (README.md, "Differences from Prometheus").
    Deliberate(&'static str),
}

impl std::fmt::Display for Known {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Known::Newer(r) => write!(f, "newer Prometheus, since {r}"),
            Known::Deliberate(r) => write!(f, "deliberate: {r}"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Case {
    /// Also the job name.
    pub name: &'static str,
    pub targets: Vec<TargetSpec>,
    /// Job keys given to both agents exactly as written.
    pub job: Map<String, Value>,
    /// Job keys only scrapewheel gets, each because Prometheus 2.42 does not know the key.
    pub scrapewheel_only: Map<String, Value>,
    pub relabel: Vec<Rule>,
    pub metric_relabel: Vec<Rule>,
    /// Scrapes compared per target.
    pub scrapes: usize,
    /// Targets left after relabeling (the suite waits for this many).
    pub active_targets: usize,
    /// Why the agents are expected to differ: behaviour a Prometheus newer than 2.42
    /// changed, or a deliberate difference; both are listed in README.md.
    pub known: Option<Known>,
    pub mode: Mode,
}

pub fn case(name: &'static str, targets: Vec<TargetSpec>) -> Case {
    let scrapes = targets.iter().map(|t| t.script.len()).max().unwrap_or(1) + 1;
    let active_targets = targets.len();
    Case {
        name,
        targets,
        job: Map::new(),
        scrapewheel_only: Map::new(),
        relabel: Vec::new(),
        metric_relabel: Vec::new(),
        scrapes,
        active_targets,
        known: None,
        mode: Mode::Exact,
    }
}

impl Case {
    pub fn set(mut self, key: &str, v: impl Into<Value>) -> Self {
        self.job.insert(key.into(), v.into());
        self
    }
    pub fn scrapewheel_only(mut self, key: &str, v: impl Into<Value>) -> Self {
        self.scrapewheel_only.insert(key.into(), v.into());
        self
    }
    pub fn relabel(mut self, r: Rule) -> Self {
        self.relabel.push(r);
        self
    }
    pub fn metric_relabel(mut self, r: Rule) -> Self {
        self.metric_relabel.push(r);
        self
    }
    pub fn scrapes(mut self, n: usize) -> Self {
        self.scrapes = n;
        self
    }
    pub fn active(mut self, n: usize) -> Self {
        self.active_targets = n;
        self
    }
    pub fn newer(mut self, reason: &'static str) -> Self {
        self.known = Some(Known::Newer(reason));
        self
    }
    pub fn deliberate(mut self, reason: &'static str) -> Self {
        self.known = Some(Known::Deliberate(reason));
        self
    }
    pub fn collapsed(mut self) -> Self {
        self.mode = Mode::Collapsed;
        self
    }
}
