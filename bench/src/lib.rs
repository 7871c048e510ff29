//! `wasp-bench`: an echo benchmark whose servers and load generator are
//! separate processes, each pinned to its own core.
//!
//! The binaries:
//!
//! - `echo-native`: a tokio echo server, current-thread or multi-thread
//!   runtime;
//! - `echo-stock-wasi`: stock wasmtime-wasi 48 running a `wasi:sockets`
//!   guest (`bench/guests/wasi-poll-echo`), tuned or with stock settings;
//! - `loadgen`: the load generator, which measures one server;
//! - `pinned-bench`: the driver, which starts every server and the load
//!   generator with `taskset`, repeats, and reports (see `bench/README.md`).
//!
//! This library holds what they share: the line a server prints when it
//! listens, the tests of the load generator and the lines it reports them
//! with, and reading a process's CPU time from `/proc`.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};

/// Every server prints one line containing this, followed by its address,
/// once it listens (`echo-native: listening on 127.0.0.1:41234`).
pub const LISTENING: &str = "listening on ";

/// The address in a server's "listening on" line, if `line` is one.
pub fn listening_address(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once(LISTENING)?;
    rest.split_whitespace().next()?.parse().ok()
}

/// One test of the load generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Test {
    /// One-connection round-trip latency.
    Latency,
    /// One-connection stream throughput.
    Stream,
    /// Round trips per second with this many connections.
    Rate(usize),
}

impl Test {
    /// The figures the test reports.
    pub fn figures(self) -> Vec<String> {
        match self {
            Test::Latency => vec!["rtt_p50_us".into(), "rtt_p99_us".into()],
            Test::Stream => vec!["stream_mb_per_s".into(), "stream_cpu_ms_per_gb".into()],
            Test::Rate(n) => [
                "rate",
                "cpu_us_per_rt",
                "server_busy",
                "loadgen_busy",
                "other_busy",
            ]
            .iter()
            .map(|f| format!("{f}_{n}"))
            .collect(),
        }
    }

    /// The test a figure belongs to.
    pub fn of_figure(figure: &str) -> Option<Test> {
        if figure.starts_with("rtt_") {
            return Some(Test::Latency);
        }
        if figure.starts_with("stream_") {
            return Some(Test::Stream);
        }
        let (_, n) = figure.rsplit_once('_')?;
        n.parse().ok().map(Test::Rate)
    }
}

impl std::fmt::Display for Test {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Test::Latency => f.write_str("latency"),
            Test::Stream => f.write_str("stream"),
            Test::Rate(n) => write!(f, "rate_{n}"),
        }
    }
}

impl std::str::FromStr for Test {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "latency" => Ok(Test::Latency),
            "stream" => Ok(Test::Stream),
            _ => match s.strip_prefix("rate_").map(str::parse::<usize>) {
                Some(Ok(n)) if n > 0 => Ok(Test::Rate(n)),
                _ => bail!("unknown test {s:?} (latency, stream, rate_N with N > 0)"),
            },
        }
    }
}

/// A line of the load generator's stdout.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// `begin TEST`: a test starts.
    Begin(Test),
    /// `figure NAME VALUE`: a figure of the test that ran last.
    Figure(String, f64),
    /// `failed TEST REASON`: the test failed (the load generator stops).
    Failed(Test, String),
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Line::Begin(test) => write!(f, "begin {test}"),
            Line::Figure(name, value) => write!(f, "figure {name} {value}"),
            Line::Failed(test, reason) => {
                write!(f, "failed {test} {}", reason.replace('\n', " "))
            }
        }
    }
}

impl Line {
    /// Parses a line: `Ok(None)` for a line of another kind, an error for
    /// one of these kinds that does not parse (a garbled measurement must
    /// not pass unnoticed).
    pub fn parse(line: &str) -> Result<Option<Line>> {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("begin") => {
                let (Some(test), None) = (words.next(), words.next()) else {
                    bail!("malformed line {line:?}");
                };
                Ok(Some(Line::Begin(test.parse()?)))
            }
            Some("figure") => {
                let (Some(name), Some(value), None) = (words.next(), words.next(), words.next())
                else {
                    bail!("malformed line {line:?}");
                };
                let value: f64 = value.parse().with_context(|| format!("line {line:?}"))?;
                if !value.is_finite() {
                    bail!("figure {name} is not a finite number: {value}");
                }
                Ok(Some(Line::Figure(name.to_string(), value)))
            }
            Some("failed") => {
                let test: Test = words
                    .next()
                    .with_context(|| format!("malformed line {line:?}"))?
                    .parse()?;
                let reason = words.collect::<Vec<_>>().join(" ");
                Ok(Some(Line::Failed(test, reason)))
            }
            _ => Ok(None),
        }
    }
}

/// CPU time of processes, from `/proc/PID/stat`.
pub mod cpu {
    use std::time::Duration;

    use anyhow::{Context, Result, bail};

    /// Clock ticks per second of the `utime`/`stime` fields (`getconf
    /// CLK_TCK`; the kernel's USER_HZ, 100 on Linux on every common
    /// architecture).
    pub fn ticks_per_second() -> Result<u64> {
        let out = std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .context("running getconf CLK_TCK")?;
        if !out.status.success() {
            bail!("getconf CLK_TCK failed: {}", out.status);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let ticks: u64 = text
            .trim()
            .parse()
            .with_context(|| format!("getconf CLK_TCK printed {text:?}"))?;
        if ticks == 0 {
            bail!("getconf CLK_TCK printed 0");
        }
        Ok(ticks)
    }

    /// `utime + stime` of the process `pid` (`"self"` for this one), all
    /// its threads, in clock ticks.
    pub fn ticks(pid: &str) -> Result<u64> {
        let path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        parse_ticks(&stat).with_context(|| format!("parsing {path}: {stat:?}"))
    }

    /// `utime + stime` from the text of a `/proc/PID/stat`. The command
    /// name (field 2) is in parentheses and may hold spaces, so the fields
    /// are counted from its closing parenthesis: field 3 (`state`) is the
    /// first after it, `utime` and `stime` are fields 14 and 15.
    pub fn parse_ticks(stat: &str) -> Result<u64> {
        let Some((_, rest)) = stat.rsplit_once(')') else {
            bail!("no command name");
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> Result<u64> {
            let word = fields.get(n - 3).with_context(|| format!("no field {n}"))?;
            word.parse()
                .with_context(|| format!("field {n} is {word:?}"))
        };
        Ok(field(14)? + field(15)?)
    }

    /// CPU time of the whole machine that competes with the benchmark: the
    /// `user`, `nice` and `system` fields of the first line of `/proc/stat`
    /// (the same accounting as a process's `utime` and `stime`) plus
    /// `steal` (time a virtual machine's CPUs were kept off by the
    /// hypervisor), in clock ticks.
    pub fn machine_ticks() -> Result<u64> {
        let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
        parse_machine_ticks(&stat).with_context(|| format!("parsing /proc/stat: {stat:?}"))
    }

    /// `user + nice + system + steal` from the text of `/proc/stat`.
    pub fn parse_machine_ticks(stat: &str) -> Result<u64> {
        let line = stat
            .lines()
            .find(|l| l.starts_with("cpu "))
            .context("no cpu line")?;
        let fields: Vec<&str> = line.split_whitespace().skip(1).collect();
        // user nice system idle iowait irq softirq steal ...
        let mut sum = 0;
        for index in [0, 1, 2, 7] {
            let word = fields
                .get(index)
                .with_context(|| format!("no field {index}"))?;
            sum += word
                .parse::<u64>()
                .with_context(|| format!("field {index} is {word:?}"))?;
        }
        Ok(sum)
    }

    /// A tick count as a duration.
    pub fn to_duration(ticks: u64, per_second: u64) -> Duration {
        Duration::from_secs_f64(ticks as f64 / per_second as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        for line in [
            Line::Begin(Test::Latency),
            Line::Begin(Test::Rate(256)),
            Line::Figure("rate_64".into(), 1234.5),
            Line::Failed(Test::Stream, "connection 3: round trip timed out".into()),
        ] {
            assert_eq!(Line::parse(&line.to_string()).unwrap(), Some(line));
        }
        assert_eq!(Line::parse("progress: 64 connections").unwrap(), None);
        assert!(Line::parse("figure rate_64").is_err());
        assert!(Line::parse("figure rate_64 NaN").is_err());
        assert!(Line::parse("begin rate_0").is_err());
    }

    #[test]
    fn figures_belong_to_their_test() {
        for test in [Test::Latency, Test::Stream, Test::Rate(1000)] {
            for figure in test.figures() {
                assert_eq!(Test::of_figure(&figure), Some(test));
            }
        }
    }

    #[test]
    fn listening_lines() {
        assert_eq!(
            listening_address("event-echo: listening on 127.0.0.1:4000"),
            Some("127.0.0.1:4000".parse().unwrap())
        );
        assert_eq!(listening_address("starting"), None);
    }

    #[test]
    fn stat_fields() {
        // A command name with a space and a parenthesis in it.
        let stat = "1234 (a b) c) S 1 2 3 4 5 6 7 8 9 10 111 222 13 14 15";
        assert_eq!(cpu::parse_ticks(stat).unwrap(), 333);
        assert!(cpu::parse_ticks("1234 (x) S 1 2").is_err());
        let stat = "cpu  10 20 30 400 5 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(cpu::parse_machine_ticks(stat).unwrap(), 68);
        assert!(cpu::parse_machine_ticks("cpu  1 2 3\n").is_err());
    }
}
