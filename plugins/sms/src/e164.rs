//! E.164 phone numbers: what both providers require for the recipient.
//!
//! ITU-T E.164 numbers are at most 15 digits, country code first, and the country code never
//! starts with 0; written for APIs with a leading `+` (Twilio's `To` "in E.164 format",
//! <https://www.twilio.com/docs/messaging/api/message-resource>). Checking it here turns a
//! number the provider would refuse into a permanent failure before any request is made.

/// Why a recipient is not an E.164 number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotE164(pub String);

impl std::fmt::Display for NotE164 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} is not an E.164 phone number (`+`, then 2 to 15 digits, the first not 0)",
            self.0
        )
    }
}

/// `number` if it is `+` followed by 2 to 15 digits, the first of them not `0`
/// (`^\+[1-9][0-9]{1,14}$`); no spaces, dashes or brackets, which the providers would have to
/// guess about.
pub fn parse(number: &str) -> Result<&str, NotE164> {
    let bad = || NotE164(number.to_string());
    let digits = number.strip_prefix('+').ok_or_else(bad)?;
    let well_formed = (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if well_formed {
        Ok(number)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plus_and_up_to_fifteen_digits() {
        for good in [
            "+14155552671",
            "+447700900123",
            "+551199998888",
            "+12",
            "+123456789012345",
        ] {
            assert_eq!(parse(good), Ok(good));
        }
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "",
            "+",
            "+1",
            "14155552671",
            "+1 415 555 2671",
            "+1-415-555-2671",
            "+(1)4155552671",
            "+04155552671",
            "+1234567890123456",
            "+1415555267a",
            "++14155552671",
            "whatsapp:+14155552671",
        ] {
            assert_eq!(parse(bad), Err(NotE164(bad.to_string())), "{bad:?}");
        }
        assert!(NotE164("12".into()).to_string().contains("E.164"));
    }
}
