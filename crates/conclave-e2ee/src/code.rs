//! The security code members compare to catch a server that slipped someone in.
//!
//! The MLS epoch authenticator (RFC 9420 §8.7) is a secret every member of an epoch shares and
//! nobody outside (the server included) can compute. Read as a big-endian integer (256 bits
//! for SHA-256 suites), its lowest 60 decimal digits are shown in 12 groups of 5. Reducing a
//! uniform 256-bit value mod 10^60 is biased by less than 10^-17, so every digit carries its
//! full weight: 60 digits is about 199 bits.

/// Digits shown, in groups of [`GROUP`].
const DIGITS: usize = 60;
const GROUP: usize = 5;

/// "12345 67890 ..." from an epoch authenticator.
pub(crate) fn security_code(authenticator: &[u8]) -> String {
    let mut number = authenticator.to_vec();
    let mut digits = Vec::with_capacity(DIGITS);
    for _ in 0..DIGITS {
        // One long division of the big-endian number by 10; the remainder is the next digit.
        let mut remainder: u32 = 0;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 10) as u8;
            remainder = value % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    digits.reverse();
    let mut out = String::with_capacity(DIGITS + DIGITS / GROUP);
    for (i, chunk) in digits.chunks(GROUP).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.extend(chunk.iter().map(|&d| char::from(d)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::security_code;

    #[test]
    fn small_numbers_are_zero_padded_to_sixty_digits() {
        let mut auth = [0u8; 32];
        auth[31] = 0x01;
        auth[30] = 0x02; // 0x0201 = 513
        let code = security_code(&auth);
        assert_eq!(code.len(), 60 + 11);
        assert!(code.ends_with("00000 00513"));
        assert_eq!(code.split(' ').count(), 12);
    }

    #[test]
    fn all_ones_gives_the_low_digits_of_two_to_the_256_minus_one() {
        // 2^256 - 1 = 115792089237316195423570985008687907853269984665640564039457584007913129639935
        let code = security_code(&[0xff; 32]).replace(' ', "");
        let full = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(code, full[full.len() - 60..]);
    }
}
