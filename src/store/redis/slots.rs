//! Redis Cluster key slots, computed here so the store can tell which shard a session lives on.
//!
//! The per-shard generation tokens ([`super::shards`]) need a key on every master, i.e. a hash tag
//! for a slot that master owns, and the reconciliation after a failover needs the slot of each
//! local session. Both are the cluster's own rule: CRC16/XMODEM of the key's hash tag, mod 16384.

/// Number of slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// CRC16/XMODEM, the checksum Redis Cluster hashes keys with.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`, hash tag rules included (the first non-empty `{...}` is hashed).
pub fn slot(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let hashed = match key.find('{') {
        Some(open) => match key[open + 1..].find('}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16(hashed) % SLOTS
}

/// A short hash tag (without braces) whose slot is `slot`: `x<n>` for the smallest such `n`.
pub fn tag_for_slot(slot: u16) -> String {
    let slot = slot % SLOTS;
    (0u32..)
        .map(|n| format!("x{n}"))
        .find(|tag| crc16(tag.as_bytes()) % SLOTS == slot)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values_and_tags() {
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
        assert_eq!(slot("foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        for s in [0, 1, 5460, 5461, 10922, 10923, 16383] {
            assert_eq!(slot(&format!("p:{{{}}}:k", tag_for_slot(s))), s);
        }
    }
}
