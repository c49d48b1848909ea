//! SecurID-style passcodes (DESIGN §2.7): the tokencode alone in new-PIN
//! mode, otherwise the PIN immediately followed by the tokencode.

use super::Error;

pub const TOKENCODE_DIGITS: usize = 6;
pub const PIN_MIN: usize = 4;
pub const PIN_MAX: usize = 8;

/// What a typed passcode holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passcode<'a> {
    pub pin: Option<&'a str>,
    pub tokencode: &'a str,
}

/// Splits a passcode; any malformed one is just "Invalid Tokencode or PIN",
/// never a hint at which part was wrong.
pub fn parse(passcode: &str, new_pin_mode: bool) -> Result<Passcode<'_>, Error> {
    if !passcode.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidPasscode);
    }
    if new_pin_mode {
        return if passcode.len() == TOKENCODE_DIGITS {
            Ok(Passcode { pin: None, tokencode: passcode })
        } else {
            Err(Error::InvalidPasscode)
        };
    }
    let pin_len = passcode.len().checked_sub(TOKENCODE_DIGITS).ok_or(Error::InvalidPasscode)?;
    if !(PIN_MIN..=PIN_MAX).contains(&pin_len) {
        return Err(Error::InvalidPasscode);
    }
    let (pin, tokencode) = passcode.split_at(pin_len);
    Ok(Passcode { pin: Some(pin), tokencode })
}

/// A new PIN: 4 to 8 digits, else "Your new PIN has been rejected".
pub fn check_new_pin(pin: &str) -> Result<(), Error> {
    if (PIN_MIN..=PIN_MAX).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(Error::PinRejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_pin_mode_takes_the_tokencode_alone() {
        assert_eq!(parse("123456", true).unwrap(), Passcode { pin: None, tokencode: "123456" });
        for bad in ["12345", "1234567", "12345a", "", "1234123456"] {
            assert_eq!(parse(bad, true), Err(Error::InvalidPasscode), "{bad}");
        }
    }

    #[test]
    fn normal_mode_takes_pin_then_tokencode() {
        assert_eq!(parse("1234987654", false).unwrap(), Passcode { pin: Some("1234"), tokencode: "987654" });
        assert_eq!(parse("12345678987654", false).unwrap(), Passcode { pin: Some("12345678"), tokencode: "987654" });
        for bad in ["987654", "123987654", "123456789987654", "12a4987654", " 1234987654", "１２３４987654"] {
            assert_eq!(parse(bad, false), Err(Error::InvalidPasscode), "{bad}");
        }
    }

    #[test]
    fn pins_have_four_to_eight_digits() {
        for good in ["1234", "00000000", "5678123"] {
            assert!(check_new_pin(good).is_ok(), "{good}");
        }
        for bad in ["123", "123456789", "12a4", "", "12 34", "１２３４"] {
            assert_eq!(check_new_pin(bad), Err(Error::PinRejected), "{bad}");
        }
    }
}
