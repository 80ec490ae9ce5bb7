//! Which of a template's locales a customer reads: their `locale` attribute as it is
//! (`pt-BR`), then its language alone (`pt`), then the template's default. Tags compare without
//! regard to case or to `-` versus `_` (`pt_br` finds `pt-BR`), as BCP 47 tags are
//! case-insensitive and both separators are common in customer data.

/// The locale of `locales` that a customer whose `locale` attribute is `wanted` reads, or
/// `default` when neither the tag nor its language is there.
pub fn resolve<'a, I>(wanted: Option<&str>, locales: I, default: &'a str) -> &'a str
where
    I: IntoIterator<Item = &'a str> + Clone,
{
    let Some(wanted) = wanted.map(str::trim).filter(|w| !w.is_empty()) else {
        return default;
    };
    let same = |a: &str, b: &str| {
        a.len() == b.len()
            && a.bytes().zip(b.bytes()).all(|(x, y)| {
                let norm = |c: u8| {
                    if c == b'_' {
                        b'-'
                    } else {
                        c.to_ascii_lowercase()
                    }
                };
                norm(x) == norm(y)
            })
    };
    if let Some(exact) = locales.clone().into_iter().find(|l| same(l, wanted)) {
        return exact;
    }
    let language = wanted.split(['-', '_']).next().unwrap_or(wanted);
    locales
        .into_iter()
        .find(|l| same(l, language))
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::resolve;

    const LOCALES: [&str; 3] = ["en", "pt", "pt-BR"];

    fn pick(wanted: Option<&str>) -> &'static str {
        resolve(wanted, LOCALES.iter().copied(), "en")
    }

    #[test]
    fn a_customer_reads_their_locale_then_its_language_then_the_default() {
        assert_eq!(pick(Some("pt-BR")), "pt-BR");
        assert_eq!(pick(Some("pt-PT")), "pt");
        assert_eq!(pick(Some("fr-FR")), "en");
        assert_eq!(pick(None), "en");
        assert_eq!(pick(Some("  ")), "en");
    }

    #[test]
    fn tags_match_without_regard_to_case_or_separator() {
        assert_eq!(pick(Some("pt_br")), "pt-BR");
        assert_eq!(pick(Some("PT")), "pt");
        assert_eq!(resolve(Some("de-AT"), ["en"].into_iter(), "en"), "en");
    }
}
