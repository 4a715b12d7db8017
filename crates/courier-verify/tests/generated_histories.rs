//! Generated histories: a simulated log per key, producers appending to it, consumers reading
//! it in order. Clean ones must be judged valid under every guarantee with nothing found;
//! one injected duplicate or lost write must be found and judged as the guarantees say. And
//! no input, however mangled, makes the parser or the checker panic.

use courier_verify::history::parse;
use courier_verify::{check, AnomalyKind, CheckOptions, CheckResult, Guarantee};
use proptest::prelude::*;

/// xorshift64*: the simulation's choices, from the seed proptest picks.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
    }
}

/// What to break in the simulated broker.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Inject {
    Nothing,
    /// Store one acknowledged record a second time, at the end of its key's log.
    Duplicate,
    /// Acknowledge one record of key k0 (not its last) but never let a consumer read it.
    Lost,
}

/// One record in a key's log.
struct Entry {
    offset: i64,
    value: i64,
    /// Acknowledged to the producer but invisible to consumers.
    hidden: bool,
}

#[derive(Debug, Clone)]
struct Params {
    seed: u64,
    keys: usize,
    values_per_key: usize,
    consumers: usize,
    transactional: bool,
}

/// Writes history lines, numbering and timing them.
struct Writer {
    text: String,
    index: u64,
    time: u64,
}

impl Writer {
    fn op(&mut self, process: i64, kind: &str, f: &str, value: &str) {
        self.time += 1_000_000;
        self.text.push_str(&format!(
            "{{\"index\":{},\"time\":{},\"process\":{process},\"type\":\"{kind}\",\"f\":\"{f}\",\"value\":{value}}}\n",
            self.index, self.time
        ));
        self.index += 1;
    }
}

/// Generates a history. Returns it and, for an injection, the key and value broken.
fn generate(p: &Params, inject: Inject) -> (String, Option<(String, i64)>) {
    let mut rng = Rng(p.seed | 1);
    let mode = if p.transactional {
        "transactional"
    } else {
        "acks-all"
    };
    let mut w = Writer {
        text: format!(
            "{{\"type\":\"meta\",\"version\":1,\"guarantee\":\"exactly-once\",\"isolation\":\"read_committed\",\"producer_mode\":\"{mode}\",\"seed\":{},\"bootstrap\":\"sim\",\"started_at\":\"2025-01-01T00:00:00Z\"}}\n",
            p.seed
        ),
        index: 0,
        time: 0,
    };
    let mut logs: Vec<Vec<Entry>> = (0..p.keys).map(|_| Vec::new()).collect();
    let mut next_offset = vec![0i64; p.keys];
    let mut sent = vec![0usize; p.keys];
    // Consumers' positions: an index into each key's log.
    let mut positions = vec![vec![0usize; p.keys]; p.consumers];
    let lost_at = (inject == Inject::Lost).then(|| rng.below(p.values_per_key - 1));
    let mut broken = None;
    let keys: Vec<String> = (0..p.keys).map(|k| format!("\"k{k}\"")).collect();
    let all_keys = format!("{{\"keys\":[{}]}}", keys.join(","));
    for c in 0..p.consumers {
        let process = 100 + c as i64;
        w.op(process, "invoke", "assign", &all_keys);
        w.op(process, "ok", "assign", &all_keys);
    }

    let poll = |w: &mut Writer, logs: &[Vec<Entry>], pos: &mut [usize], c: usize, max: usize| {
        let mut reads = Vec::new();
        for (k, log) in logs.iter().enumerate() {
            let mut taken = 0;
            while pos[k] < log.len() && taken < max {
                let e = &log[pos[k]];
                pos[k] += 1;
                if !e.hidden {
                    reads.push(format!("[\"poll\",\"k{k}\",[{},{}]]", e.offset, e.value));
                    taken += 1;
                }
            }
        }
        let process = 100 + c as i64;
        w.op(process, "invoke", "poll", "[]");
        w.op(process, "ok", "poll", &format!("[{}]", reads.join(",")));
    };

    while sent.iter().any(|&n| n < p.values_per_key) {
        if rng.below(10) < 6 {
            let open: Vec<usize> = (0..p.keys)
                .filter(|&k| sent[k] < p.values_per_key)
                .collect();
            let k = open[rng.below(open.len())];
            let value = sent[k] as i64 + 1;
            let offset = next_offset[k];
            // A transaction's commit marker takes an offset too.
            next_offset[k] += if p.transactional { 2 } else { 1 };
            let hidden = k == 0 && lost_at == Some(sent[k]);
            if hidden {
                broken = Some((format!("k{k}"), value));
            }
            sent[k] += 1;
            logs[k].push(Entry {
                offset,
                value,
                hidden,
            });
            let producer = rng.below(2) as i64;
            let f = if p.transactional { "txn" } else { "send" };
            w.op(
                producer,
                "invoke",
                f,
                &format!("[[\"send\",\"k{k}\",[null,{value}]]]"),
            );
            w.op(
                producer,
                "ok",
                f,
                &format!("[[\"send\",\"k{k}\",[{offset},{value}]]]"),
            );
        } else {
            let c = rng.below(p.consumers);
            let max = 1 + rng.below(3);
            poll(&mut w, &logs, &mut positions[c], c, max);
        }
    }
    if inject == Inject::Duplicate {
        let k = rng.below(p.keys);
        let j = rng.below(logs[k].len());
        let value = logs[k][j].value;
        logs[k].push(Entry {
            offset: next_offset[k],
            value,
            hidden: false,
        });
        broken = Some((format!("k{k}"), value));
    }
    // Every consumer drains every key, so nothing acknowledged stays unseen.
    for (c, pos) in positions.iter_mut().enumerate() {
        poll(&mut w, &logs, pos, c, usize::MAX);
    }
    (w.text, broken)
}

fn judge(text: &str) -> CheckResult {
    let h = parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    check(&h, CheckOptions::default())
}

fn params(min_values: usize) -> impl Strategy<Value = Params> {
    (
        any::<u64>(),
        1usize..=3,
        min_values..=12,
        1usize..=3,
        any::<bool>(),
    )
        .prop_map(
            |(seed, keys, values_per_key, consumers, transactional)| Params {
                seed,
                keys,
                values_per_key,
                consumers,
                transactional,
            },
        )
}

proptest! {
    #[test]
    fn clean_histories_are_valid_under_every_guarantee(p in params(1)) {
        let (text, _) = generate(&p, Inject::Nothing);
        let r = judge(&text);
        prop_assert!(r.anomalies.is_empty(), "{:?}\n{text}", r.anomalies);
        for g in Guarantee::ALL {
            prop_assert!(r.valid_under(g));
        }
    }

    #[test]
    fn one_injected_duplicate_is_found(p in params(1)) {
        let (text, broken) = generate(&p, Inject::Duplicate);
        let (key, value) = broken.unwrap();
        let r = judge(&text);
        prop_assert_eq!(r.kinds(), vec![AnomalyKind::Duplicate], "{}", text);
        let dup = &r.anomalies[&AnomalyKind::Duplicate][0];
        prop_assert_eq!(dup.key.as_deref(), Some(key.as_str()));
        prop_assert_eq!(&dup.values, &vec![value]);
        prop_assert_eq!(
            Guarantee::ALL.map(|g| r.valid_under(g)),
            [false, true, false]
        );
    }

    #[test]
    fn one_injected_lost_write_is_found(p in params(2)) {
        let (text, broken) = generate(&p, Inject::Lost);
        let (key, value) = broken.unwrap();
        let r = judge(&text);
        let lost = r.anomalies.get(&AnomalyKind::LostWrite).cloned().unwrap_or_default();
        prop_assert_eq!(lost.len(), 1, "{}", text);
        prop_assert_eq!(lost[0].key.as_deref(), Some(key.as_str()));
        prop_assert_eq!(&lost[0].values, &vec![value]);
        // A consumer that read across the hole skipped it: that is all else there may be.
        for kind in r.kinds() {
            prop_assert!(
                matches!(kind, AnomalyKind::LostWrite | AnomalyKind::PollSkip | AnomalyKind::IntPollSkip),
                "unexpected {}", kind
            );
        }
        prop_assert_eq!(
            Guarantee::ALL.map(|g| r.valid_under(g)),
            [true, false, false]
        );
    }

    #[test]
    fn mangled_histories_never_panic(
        p in params(1),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let (text, _) = generate(&p, Inject::Nothing);
        let mut bytes = text.into_bytes();
        bytes.truncate(cut.index(bytes.len() + 1));
        for (at, byte) in flips {
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
        }
        // Either a clear error or a history the checker can judge.
        if let Ok(h) = parse(&bytes[..]) {
            let r = check(&h, CheckOptions::default());
            let _ = courier_verify::report::text(&r, "mangled", 3);
            let _ = courier_verify::html::page(&h, &r, "");
        }
    }

    #[test]
    fn arbitrary_lines_never_panic(lines in prop::collection::vec(".{0,80}", 0..6)) {
        let meta = r#"{"type":"meta","version":1,"guarantee":"at-least-once","isolation":"read_committed","producer_mode":"acks-all"}"#;
        let text = std::iter::once(meta.to_string()).chain(lines).collect::<Vec<_>>().join("\n");
        if let Ok(h) = parse(text.as_bytes()) {
            let _ = check(&h, CheckOptions::default());
        }
    }
}
