//! Reading a history file and pairing each invoke with its completion.
//!
//! Malformed input of any kind is an error naming its line, never a panic. What is checked:
//! the header, each line's shape, indexes that increase, one operation at a time per process,
//! completions that match their invoke, nothing after a crash, and values unique per key.
//! Two things are accepted without an invoke because clients emit them from callbacks: an
//! `assign`/`subscribe` completion (a rebalance, possibly while a poll is in flight) and an
//! offset `commit` completion.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::faults::FaultTracker;
use super::{ClientF, ClientOp, History, Meta, MicroF, MicroOp, Outcome, Reset, ResetCause};
use crate::VerifyError;

/// Reads and pairs the history in the file at `path`.
pub fn parse_file(path: &Path) -> Result<History, VerifyError> {
    let file = std::fs::File::open(path).map_err(|source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_reader(std::io::BufReader::new(file), path)
}

/// Reads and pairs a history from `reader` (for instance `text.as_bytes()`).
pub fn parse(reader: impl BufRead) -> Result<History, VerifyError> {
    parse_reader(reader, Path::new("<input>"))
}

fn parse_reader(mut reader: impl BufRead, path: &Path) -> Result<History, VerifyError> {
    let mut parser: Option<Parser> = None;
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|source| VerifyError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            break;
        }
        line += 1;
        let text = std::str::from_utf8(&buf).map_err(|_| VerifyError::NotUtf8 { line })?;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match parser.as_mut() {
            None => parser = Some(Parser::new(parse_meta(text, line)?)),
            Some(p) => p.line(text, line)?,
        }
    }
    parser.ok_or(VerifyError::Empty)?.finish()
}

/// The `type` field of an operation line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LineType {
    Invoke,
    Ok,
    Info,
    Fail,
}

/// The `f` field of an operation line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LineF {
    Send,
    Poll,
    Txn,
    Commit,
    Assign,
    Subscribe,
    Crash,
    Fault,
    /// Anything else a future workload logs; paired like the rest, then ignored.
    #[serde(other)]
    Other,
}

impl LineF {
    fn name(self) -> &'static str {
        match self {
            LineF::Send => "send",
            LineF::Poll => "poll",
            LineF::Txn => "txn",
            LineF::Commit => "commit",
            LineF::Assign => "assign",
            LineF::Subscribe => "subscribe",
            LineF::Crash => "crash",
            LineF::Fault => "fault",
            LineF::Other => "operation",
        }
    }

    fn client(self) -> Option<ClientF> {
        match self {
            LineF::Send => Some(ClientF::Send),
            LineF::Poll => Some(ClientF::Poll),
            LineF::Txn => Some(ClientF::Txn),
            _ => None,
        }
    }
}

/// One operation line.
#[derive(Deserialize)]
struct Line {
    index: u64,
    time: u64,
    process: i64,
    #[serde(rename = "type")]
    kind: LineType,
    f: LineF,
    #[serde(default)]
    value: Value,
}

/// An invoke still waiting for its completion.
struct Pending {
    f: LineF,
    index: u64,
    time: u64,
    line: usize,
    mops: Vec<MicroOp>,
    rebalanced: bool,
}

fn parse_meta(text: &str, line: usize) -> Result<Meta, VerifyError> {
    let value: Value =
        serde_json::from_str(text).map_err(|source| VerifyError::BadMeta { line, source })?;
    if value.get("type").and_then(Value::as_str) != Some("meta") {
        return Err(VerifyError::NotMeta { line });
    }
    let meta: Meta =
        serde_json::from_value(value).map_err(|source| VerifyError::BadMeta { line, source })?;
    if meta.version != 1 {
        return Err(VerifyError::UnsupportedVersion {
            line,
            version: meta.version,
        });
    }
    Ok(meta)
}

/// Pairing state while reading operation lines.
struct Parser {
    meta: Meta,
    /// Each process's in-flight invoke.
    pending: HashMap<i64, Pending>,
    /// Crashed processes and the line of their crash.
    crashed: HashMap<i64, usize>,
    ops: Vec<ClientOp>,
    resets: Vec<Reset>,
    faults: FaultTracker,
    commits: usize,
    last_index: Option<u64>,
    end_time: u64,
}

impl Parser {
    fn new(meta: Meta) -> Self {
        Parser {
            meta,
            pending: HashMap::new(),
            crashed: HashMap::new(),
            ops: Vec::new(),
            resets: Vec::new(),
            faults: FaultTracker::default(),
            commits: 0,
            last_index: None,
            end_time: 0,
        }
    }

    fn line(&mut self, text: &str, line: usize) -> Result<(), VerifyError> {
        let op: Line =
            serde_json::from_str(text).map_err(|source| VerifyError::BadOp { line, source })?;
        if let Some(previous) = self.last_index {
            if op.index <= previous {
                return Err(VerifyError::IndexNotIncreasing {
                    line,
                    index: op.index,
                    previous,
                });
            }
        }
        self.last_index = Some(op.index);
        self.end_time = self.end_time.max(op.time);

        if op.f == LineF::Fault {
            // The nemesis logs each event once as `info`; an invoke, if a nemesis logs one,
            // carries nothing the completion does not.
            if op.kind != LineType::Invoke {
                self.faults.record(line, op.time, op.value)?;
            }
            return Ok(());
        }
        if op.process < 0 {
            // Nemesis bookkeeping other than faults.
            return Ok(());
        }
        if let Some(&crash_line) = self.crashed.get(&op.process) {
            return Err(VerifyError::AfterCrash {
                line,
                process: op.process,
                crash_line,
            });
        }
        if op.f == LineF::Crash {
            self.crash(op, line);
            return Ok(());
        }
        if op.kind == LineType::Invoke {
            return self.invoke(op, line);
        }
        self.complete(op, line)
    }

    fn crash(&mut self, op: Line, line: usize) {
        if op.kind == LineType::Invoke {
            return;
        }
        if let Some(p) = self.pending.remove(&op.process) {
            self.close_unfinished(op.process, p, op.index, op.time);
        }
        self.crashed.insert(op.process, line);
        self.resets.push(Reset {
            process: op.process,
            index: op.index,
            time: op.time,
            cause: ResetCause::Crash,
        });
    }

    fn invoke(&mut self, op: Line, line: usize) -> Result<(), VerifyError> {
        if let Some(p) = self.pending.get(&op.process) {
            return Err(VerifyError::OverlappingInvoke {
                line,
                process: op.process,
                f: op.f.name(),
                pending: p.f.name(),
                pending_line: p.line,
            });
        }
        let (mops, rebalanced) = match op.f.client() {
            Some(_) => parse_mops(&op.value, line)?,
            None => (Vec::new(), false),
        };
        self.pending.insert(
            op.process,
            Pending {
                f: op.f,
                index: op.index,
                time: op.time,
                line,
                mops,
                rebalanced,
            },
        );
        Ok(())
    }

    fn complete(&mut self, op: Line, line: usize) -> Result<(), VerifyError> {
        let standalone = matches!(op.f, LineF::Assign | LineF::Subscribe | LineF::Commit);
        let pending = match self.pending.remove(&op.process) {
            Some(p) if p.f == op.f => p,
            Some(mut p) if standalone => {
                // A rebalance callback or an auto-commit while another op is in flight.
                if op.f != LineF::Commit && op.kind != LineType::Fail {
                    p.rebalanced = true;
                }
                self.pending.insert(op.process, p);
                self.standalone(&op);
                return Ok(());
            }
            Some(p) => {
                return Err(VerifyError::CompletionMismatch {
                    line,
                    process: op.process,
                    invoked: p.f.name(),
                    completed: op.f.name(),
                    invoke_line: p.line,
                })
            }
            None if standalone || op.f == LineF::Other => {
                self.standalone(&op);
                return Ok(());
            }
            None => {
                return Err(VerifyError::CompletionWithoutInvoke {
                    line,
                    process: op.process,
                    f: op.f.name(),
                })
            }
        };
        let Some(f) = op.f.client() else {
            self.standalone(&op);
            return Ok(());
        };
        let (mut mops, marker) = parse_mops(&op.value, line)?;
        if mops.is_empty() && f != ClientF::Poll {
            // A failed send may not echo what it tried to send; the invoke knows.
            mops = pending.mops;
        }
        self.ops.push(ClientOp {
            process: op.process,
            f,
            outcome: match op.kind {
                LineType::Ok => Outcome::Ok,
                LineType::Fail => Outcome::Fail,
                LineType::Info | LineType::Invoke => Outcome::Info,
            },
            invoke_index: pending.index,
            invoke_time: pending.time,
            index: op.index,
            time: op.time,
            completed: true,
            mops,
            rebalanced: pending.rebalanced || marker,
            line,
        });
        Ok(())
    }

    /// A completion that stands alone: a rebalance, a commit, or something unknown.
    fn standalone(&mut self, op: &Line) {
        let cause = match op.f {
            LineF::Assign => ResetCause::Assign,
            LineF::Subscribe => ResetCause::Subscribe,
            LineF::Commit => {
                self.commits += usize::from(op.kind == LineType::Ok);
                return;
            }
            _ => return,
        };
        // A failed assign changed nothing; an ok or indeterminate one may have moved the
        // consumer anywhere.
        if op.kind != LineType::Fail {
            self.resets.push(Reset {
                process: op.process,
                index: op.index,
                time: op.time,
                cause,
            });
        }
    }

    /// An op whose process crashed, or that the history ended before: indeterminate.
    fn close_unfinished(&mut self, process: i64, p: Pending, index: u64, time: u64) {
        if let Some(f) = p.f.client() {
            self.ops.push(ClientOp {
                process,
                f,
                outcome: Outcome::Info,
                invoke_index: p.index,
                invoke_time: p.time,
                index,
                time,
                completed: false,
                mops: p.mops,
                rebalanced: p.rebalanced,
                line: p.line,
            });
        }
    }

    fn finish(mut self) -> Result<History, VerifyError> {
        let end_index = self.last_index.unwrap_or(0);
        let end_time = self.end_time;
        let mut pending: Vec<(i64, Pending)> = self.pending.drain().collect();
        pending.sort_by_key(|(_, p)| p.index);
        for (process, p) in pending {
            self.close_unfinished(process, p, end_index, end_time);
        }
        self.ops.sort_by_key(|op| (op.index, op.invoke_index));
        check_unique_sends(&self.ops)?;
        Ok(History {
            meta: self.meta,
            ops: self.ops,
            resets: self.resets,
            faults: self.faults.finish(),
            commits: self.commits,
            end_time,
        })
    }
}

/// Values are unique per key: two ops sending one value would make "who wrote this" unknowable.
fn check_unique_sends(ops: &[ClientOp]) -> Result<(), VerifyError> {
    let mut sent: HashMap<(&str, i64), usize> = HashMap::new();
    for op in ops {
        for m in op.sends() {
            if let Some(&first_line) = sent.get(&(m.key.as_str(), m.value)) {
                if first_line != op.line {
                    return Err(VerifyError::DuplicateSend {
                        line: op.line,
                        key: m.key.clone(),
                        value: m.value,
                        first_line,
                    });
                }
            }
            sent.insert((m.key.as_str(), m.value), op.line);
        }
    }
    Ok(())
}

/// Parses a send/poll/txn value: a list of `[f, key, [offset, value]]`. Also returns whether
/// the list holds a `{"f":"assign"|"subscribe",..}` marker left by a rebalance callback.
fn parse_mops(value: &Value, line: usize) -> Result<(Vec<MicroOp>, bool), VerifyError> {
    let items = match value {
        Value::Null => return Ok((Vec::new(), false)),
        Value::Array(items) => items,
        _ => {
            return Err(VerifyError::BadMicroOp {
                line,
                position: 0,
                reason: "expected a list of [f, key, [offset, value]] micro-ops",
            })
        }
    };
    let mut mops = Vec::with_capacity(items.len());
    let mut rebalanced = false;
    for (position, item) in items.iter().enumerate() {
        match item {
            Value::Object(o)
                if matches!(
                    o.get("f").and_then(Value::as_str),
                    Some("assign" | "subscribe")
                ) =>
            {
                rebalanced = true;
            }
            Value::Array(parts) => mops.push(parse_mop(parts, line, position)?),
            _ => {
                return Err(VerifyError::BadMicroOp {
                    line,
                    position,
                    reason: "expected [f, key, [offset, value]]",
                })
            }
        }
    }
    Ok((mops, rebalanced))
}

fn parse_mop(parts: &[Value], line: usize, position: usize) -> Result<MicroOp, VerifyError> {
    let bad = |reason| VerifyError::BadMicroOp {
        line,
        position,
        reason,
    };
    let [f, key, pair] = parts else {
        return Err(bad("expected [f, key, [offset, value]]"));
    };
    let f = match f.as_str() {
        Some("send") => MicroF::Send,
        Some("poll") => MicroF::Poll,
        _ => return Err(bad("f must be \"send\" or \"poll\"")),
    };
    let key = match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(bad("key must be a string")),
    };
    let (offset, value) = match pair {
        Value::Array(p) if p.len() == 2 => {
            let offset = match &p[0] {
                Value::Null => None,
                o => Some(
                    o.as_i64()
                        .ok_or_else(|| bad("offset must be an integer or null"))?,
                ),
            };
            let value = p[1]
                .as_i64()
                .ok_or_else(|| bad("value must be an integer"))?;
            (offset, value)
        }
        // A bare value: an invoke that does not spell out the unknown offset.
        Value::Number(_) => (
            None,
            pair.as_i64()
                .ok_or_else(|| bad("value must be an integer"))?,
        ),
        _ => return Err(bad("expected [offset, value] as the third element")),
    };
    Ok(MicroOp {
        f,
        key,
        offset,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = r#"{"type":"meta","version":1,"guarantee":"exactly-once","isolation":"read_committed","producer_mode":"transactional","seed":7,"bootstrap":"127.0.0.1:9092","started_at":"2025-01-01T00:00:00Z"}"#;

    fn history(lines: &[&str]) -> Result<History, VerifyError> {
        let mut text = String::from(META);
        for l in lines {
            text.push('\n');
            text.push_str(l);
        }
        parse(text.as_bytes())
    }

    #[test]
    fn pairs_invokes_with_completions() {
        let h = history(&[
            r#"{"index":0,"time":10,"process":0,"type":"invoke","f":"send","value":[["send","k1",[null,1]]]}"#,
            r#"{"index":1,"time":15,"process":1,"type":"invoke","f":"poll","value":[]}"#,
            r#"{"index":2,"time":20,"process":0,"type":"ok","f":"send","value":[["send","k1",[0,1]]]}"#,
            r#"{"index":3,"time":30,"process":1,"type":"ok","f":"poll","value":[["poll","k1",[0,1]]]}"#,
        ])
        .unwrap();
        assert_eq!(h.ops.len(), 2);
        let send = &h.ops[0];
        assert_eq!(
            (send.f, send.outcome, send.invoke_index, send.index),
            (ClientF::Send, Outcome::Ok, 0, 2)
        );
        assert_eq!(send.mops[0].offset, Some(0));
        assert_eq!((h.ops[1].invoke_time, h.ops[1].time), (15, 30));
        assert_eq!(h.end_time, 30);
    }

    #[test]
    fn an_op_cut_short_by_a_crash_or_the_end_is_indeterminate() {
        let h = history(&[
            r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"send","value":[["send","k1",[null,1]]]}"#,
            r#"{"index":1,"time":2,"process":1,"type":"invoke","f":"txn","value":[["send","k1",[null,2]]]}"#,
            r#"{"index":2,"time":3,"process":0,"type":"info","f":"crash","value":null}"#,
        ])
        .unwrap();
        assert_eq!(h.ops.len(), 2);
        assert!(h
            .ops
            .iter()
            .all(|o| o.outcome == Outcome::Info && !o.completed));
        assert_eq!(h.resets.len(), 1);
        let err = history(&[
            r#"{"index":0,"time":1,"process":0,"type":"info","f":"crash","value":null}"#,
            r#"{"index":1,"time":2,"process":0,"type":"invoke","f":"poll","value":[]}"#,
        ])
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 3: process 0 crashed on line 2 and cannot run operations"
        );
    }

    #[test]
    fn a_rebalance_during_a_poll_marks_it() {
        let h = history(&[
            r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"poll","value":[]}"#,
            r#"{"index":1,"time":2,"process":0,"type":"ok","f":"assign","value":{"keys":["k1"]}}"#,
            r#"{"index":2,"time":3,"process":0,"type":"ok","f":"poll","value":[["poll","k1",[0,1]]]}"#,
            r#"{"index":3,"time":4,"process":0,"type":"invoke","f":"poll","value":[]}"#,
            r#"{"index":4,"time":5,"process":0,"type":"ok","f":"poll","value":[{"f":"assign","keys":["k1"]},["poll","k1",[1,2]]]}"#,
        ])
        .unwrap();
        assert!(h.ops[0].rebalanced && h.ops[1].rebalanced);
        assert_eq!(h.ops[1].mops.len(), 1);
        assert_eq!(h.resets.len(), 1);
    }

    #[test]
    fn structural_errors_name_their_line() {
        let cases: &[(&[&str], &str)] = &[
            (
                &[r#"{"index":0,"time":1,"process":0,"type":"ok","f":"send","value":[]}"#],
                "line 2: process 0 completes a send it never invoked",
            ),
            (
                &[
                    r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"send","value":[]}"#,
                    r#"{"index":1,"time":1,"process":0,"type":"invoke","f":"poll","value":[]}"#,
                ],
                "line 3: process 0 invokes poll while its send from line 2 has not completed (a process runs one operation at a time)",
            ),
            (
                &[
                    r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"send","value":[]}"#,
                    r#"{"index":1,"time":1,"process":0,"type":"ok","f":"poll","value":[]}"#,
                ],
                "line 3: process 0 completes a poll but invoked a send on line 2",
            ),
            (
                &[
                    r#"{"index":5,"time":1,"process":0,"type":"invoke","f":"poll","value":[]}"#,
                    r#"{"index":5,"time":1,"process":0,"type":"ok","f":"poll","value":[]}"#,
                ],
                "line 3: index 5 does not follow the previous index 5",
            ),
            (
                &[r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"send","value":[["send","k1",[null,"x"]]]}"#],
                "line 2: value[0]: value must be an integer",
            ),
            (
                &[r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"send","value":[["write","k1",[null,1]]]}"#],
                "line 2: value[0]: f must be \"send\" or \"poll\"",
            ),
            (
                &[r#"{"index":0,"time":1,"process":-1,"type":"info","f":"fault","value":{"fault":"delay"}}"#],
                "line 2: bad fault value: expected {\"fault\":kind,\"phase\":\"start\"|\"stop\",\"detail\":..}",
            ),
            (
                &[
                    r#"{"index":0,"time":1,"process":0,"type":"invoke","f":"send","value":[["send","k1",[null,1]]]}"#,
                    r#"{"index":1,"time":1,"process":0,"type":"ok","f":"send","value":[["send","k1",[0,1]]]}"#,
                    r#"{"index":2,"time":1,"process":1,"type":"invoke","f":"send","value":[["send","k1",[null,1]]]}"#,
                    r#"{"index":3,"time":1,"process":1,"type":"ok","f":"send","value":[["send","k1",[1,1]]]}"#,
                ],
                "line 5: value 1 of key \"k1\" was already sent by the operation on line 3; values must be unique per key",
            ),
        ];
        for (lines, want) in cases {
            assert_eq!(history(lines).unwrap_err().to_string(), *want);
        }
    }

    #[test]
    fn header_errors() {
        assert!(matches!(parse("".as_bytes()), Err(VerifyError::Empty)));
        assert!(matches!(parse("\n\n".as_bytes()), Err(VerifyError::Empty)));
        assert_eq!(
            parse(r#"{"index":0}"#.as_bytes()).unwrap_err().to_string(),
            "line 1: expected the meta header ({\"type\":\"meta\",\"version\":1,...})"
        );
        let v2 = META.replace("\"version\":1", "\"version\":2");
        assert_eq!(
            parse(v2.as_bytes()).unwrap_err().to_string(),
            "line 1: history version 2 is not supported (this checker reads version 1)"
        );
        let bad = META.replace("exactly-once", "twice");
        assert!(parse(bad.as_bytes())
            .unwrap_err()
            .to_string()
            .starts_with("line 1: bad meta header: unknown variant `twice`"));
        assert!(matches!(
            parse(&b"\xff\xfe"[..]),
            Err(VerifyError::NotUtf8 { line: 1 })
        ));
    }
}
