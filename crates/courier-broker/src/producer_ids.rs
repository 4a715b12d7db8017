//! Producer ids for InitProducerId, unique across restarts.
//!
//! Ids are handed out from blocks: before the first id of a block is used, the block's end is
//! written durably to `<data>/meta/producer_id_block`. After a restart allocation continues from
//! the stored end, so an id is never handed out twice even if the broker crashed mid-block
//! (the rest of that block is skipped).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::BrokerError;
use crate::topics::write_durably;

/// Ids reserved per durable write.
const BLOCK: i64 = 1000;

/// Allocates producer ids.
pub struct ProducerIdManager {
    /// Where the current block's end is stored.
    path: PathBuf,
    /// (next id, end of the reserved block).
    state: Mutex<(i64, i64)>,
}

impl ProducerIdManager {
    /// Loads the last reserved block end from `meta_dir`.
    pub fn open(meta_dir: &Path) -> Result<Self, BrokerError> {
        let path = meta_dir.join("producer_id_block");
        let start = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<i64>()
                .map_err(|e| BrokerError::CorruptMetadata {
                    path: path.clone(),
                    reason: e.to_string(),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => {
                return Err(BrokerError::Metadata {
                    op: "read",
                    path,
                    source,
                })
            }
        };
        Ok(Self {
            path,
            state: Mutex::new((start, start)),
        })
    }

    /// A producer id never handed out before.
    pub fn next(&self) -> Result<i64, BrokerError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.0 >= state.1 {
            let end = state.0 + BLOCK;
            write_durably(&self.path, end.to_string().as_bytes())?;
            state.1 = end;
        }
        let id = state.0;
        state.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_across_restarts_even_mid_block() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = ProducerIdManager::open(dir.path()).expect("open");
        let first: Vec<i64> = (0..3).map(|_| m.next().expect("id")).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(m); // A crash mid-block.
        let m = ProducerIdManager::open(dir.path()).expect("reopen");
        let after = m.next().expect("id");
        assert!(
            after >= BLOCK,
            "the rest of the first block is skipped: {after}"
        );
        let more: Vec<i64> = (0..BLOCK + 5).map(|_| m.next().expect("id")).collect();
        assert!(more.windows(2).all(|w| w[1] == w[0] + 1));
        assert!(more[0] > after);
    }
}
