//! Proof of work sized to a device's security level.
//!
//! The work is SHA-256 with a number of leading zero bits: level 0 needs
//! none (records a gateway makes itself), each level above adds four bits,
//! so level 5 (20 bits, about a million hashes) costs a microcontroller
//! seconds and an attacker flooding the tangle the same per transaction.

use crate::crypto::Hash;

/// The highest level.
pub const MAX_LEVEL: u8 = 6;

/// Leading zero bits level `level` needs.
pub fn difficulty(level: u8) -> u32 {
    u32::from(level.min(MAX_LEVEL)) * 4
}

pub fn leading_zero_bits(hash: &Hash) -> u32 {
    let mut bits = 0;
    for byte in hash.0 {
        if byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_add_four_bits() {
        assert_eq!((difficulty(0), difficulty(1), difficulty(5)), (0, 4, 20));
        assert_eq!(difficulty(200), difficulty(MAX_LEVEL));
        let mut h = Hash([0xff; 32]);
        assert_eq!(leading_zero_bits(&h), 0);
        h.0[0] = 0;
        h.0[1] = 0x1f;
        assert_eq!(leading_zero_bits(&h), 11);
        assert_eq!(leading_zero_bits(&Hash::ZERO), 256);
    }
}
