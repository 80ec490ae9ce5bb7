//! How many SMS parts a text takes, as the networks count them (3GPP TS 23.038 alphabets, TS
//! 23.040 concatenation): a text in the GSM 7-bit default alphabet fits 160 septets in one
//! part, and 153 per part once split (the User Data Header takes 7); any other character makes
//! the whole text UCS-2, 70 UTF-16 units in one part, 67 per part once split. Characters of the
//! GSM-7 extension table (`€`, `[`, `]`, `{`, `}`, `\`, `^`, `~`, `|`, form feed) take two
//! septets (escape plus character), and neither an escape pair nor a UTF-16 surrogate pair is
//! split between parts. Providers document the same limits (Twilio's "What is the SMS character
//! limit?" glossary page, 160/153 and 70/67; Vonage's "Concatenation and
//! encoding" guide, <https://developer.vonage.com/en/messaging/sms/guides/concatenation-and-encoding>).
//!
//! The count is logged with each delivery and reported in its receipt (`receipt-detail`,
//! contract 0.1.2).

/// The text's encoding on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// The GSM 7-bit default alphabet (with its extension table).
    Gsm7,
    /// UCS-2 (UTF-16 code units, as providers send it).
    Ucs2,
}

impl Encoding {
    /// The name providers and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }
}

/// What a text costs to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// Its encoding.
    pub encoding: Encoding,
    /// Its length in septets (GSM-7) or UTF-16 units (UCS-2).
    pub units: usize,
    /// How many parts it is sent in (at least 1).
    pub count: usize,
}

/// The GSM 7-bit default alphabet, but for the escape (0x1B), which is not text.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The extension table: each is sent as escape plus character, two septets.
const GSM7_EXTENSION: &str = "\u{0C}^{}\\[~]|€";

/// Septets `c` takes in GSM-7, or `None` when GSM-7 cannot carry it.
fn gsm7_septets(c: char) -> Option<usize> {
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// The segments `text` is sent in.
pub fn count(text: &str) -> Segments {
    let septets: Option<Vec<usize>> = text.chars().map(gsm7_septets).collect();
    match septets {
        Some(widths) => pack(Encoding::Gsm7, &widths, 160, 153),
        None => {
            let widths: Vec<usize> = text.chars().map(char::len_utf16).collect();
            pack(Encoding::Ucs2, &widths, 70, 67)
        }
    }
}

/// Fits characters of `widths` units into parts: one part of `single` if all fit, else parts
/// of `part` filled greedily, a character never split between two.
fn pack(encoding: Encoding, widths: &[usize], single: usize, part: usize) -> Segments {
    let units: usize = widths.iter().sum();
    if units <= single {
        return Segments {
            encoding,
            units,
            count: 1,
        };
    }
    let mut count = 1;
    let mut used = 0;
    for &width in widths {
        if used + width > part {
            count += 1;
            used = 0;
        }
        used += width;
    }
    Segments {
        encoding,
        units,
        count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(text: &str) -> (Encoding, usize, usize) {
        let s = count(text);
        (s.encoding, s.units, s.count)
    }

    #[test]
    fn one_gsm7_part_holds_160_septets_and_161_take_two() {
        assert_eq!(segments(&"a".repeat(160)), (Encoding::Gsm7, 160, 1));
        assert_eq!(segments(&"a".repeat(161)), (Encoding::Gsm7, 161, 2));
        assert_eq!(segments(&"a".repeat(306)), (Encoding::Gsm7, 306, 2));
        assert_eq!(segments(&"a".repeat(307)), (Encoding::Gsm7, 307, 3));
    }

    #[test]
    fn one_ucs2_part_holds_70_units_and_71_take_two() {
        assert_eq!(segments(&"ж".repeat(70)), (Encoding::Ucs2, 70, 1));
        assert_eq!(segments(&"ж".repeat(71)), (Encoding::Ucs2, 71, 2));
        assert_eq!(segments(&"ж".repeat(134)), (Encoding::Ucs2, 134, 2));
        assert_eq!(segments(&"ж".repeat(135)), (Encoding::Ucs2, 135, 3));
    }

    #[test]
    fn extension_characters_take_two_septets() {
        assert_eq!(segments("€"), (Encoding::Gsm7, 2, 1));
        assert_eq!(segments("{[~]}|\\^\u{0C}"), (Encoding::Gsm7, 18, 1));
        assert_eq!(segments(&"€".repeat(80)), (Encoding::Gsm7, 160, 1));
        assert_eq!(
            segments(&format!("{}€", "a".repeat(159))),
            (Encoding::Gsm7, 161, 2)
        );
    }

    #[test]
    fn an_escape_pair_is_never_split_between_parts() {
        // 152 septets, then `€` would straddle the 153rd: it moves whole to part two, so 306
        // septets take three parts where 306 / 153 would say two.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(segments(&text), (Encoding::Gsm7, 306, 3));
    }

    #[test]
    fn one_character_outside_gsm7_makes_the_whole_text_ucs2() {
        assert_eq!(
            segments(&format!("{}ç", "a".repeat(69))),
            (Encoding::Ucs2, 70, 1)
        );
        // `Ç` (capital) is GSM-7, `ç` is not.
        assert_eq!(segments("Ça va"), (Encoding::Gsm7, 5, 1));
        // An emoji is a surrogate pair: two units, never split.
        assert_eq!(segments("👋"), (Encoding::Ucs2, 2, 1));
        let text = format!("{}👋", "ж".repeat(66));
        assert_eq!(
            segments(&format!("{text}{}", "ж".repeat(3))),
            (Encoding::Ucs2, 71, 2)
        );
    }

    #[test]
    fn gsm7_covers_the_default_alphabet() {
        let text = "Hi Ana, code 1234: £5 off @home ¿Qué? Ñandù ÄÖÜ äöüà ΔΦΓΛΩ _§";
        assert_eq!(segments(text), (Encoding::Gsm7, text.chars().count(), 1));
        // `ú` is not in the alphabet (`ù` is).
        assert_eq!(count("Ñandú").encoding, Encoding::Ucs2);
        assert_eq!(count("").count, 1);
        assert_eq!(Encoding::Ucs2.as_str(), "UCS-2");
    }
}
