//! Twilio's default opt-out, opt-in and help keywords, for `--infer-keywords`.
//!
//! Only used for inbound messages whose schema predates `optOutType` (version < 5, or unknown):
//! there the body is the only clue. From version 5 on Twilio decides and we never second-guess it
//! (Advanced Opt-Out may use custom keywords the body check would not know).

use super::OptOutType;

/// The default keywords and what each means. "OPT OUT" with a space is deliberately absent:
/// Twilio does not treat it as a keyword.
const KEYWORDS: &[(&str, OptOutType)] = &[
    ("STOP", OptOutType::Stop),
    ("STOPALL", OptOutType::Stop),
    ("UNSUBSCRIBE", OptOutType::Stop),
    ("CANCEL", OptOutType::Stop),
    ("END", OptOutType::Stop),
    ("QUIT", OptOutType::Stop),
    ("REVOKE", OptOutType::Stop),
    ("OPTOUT", OptOutType::Stop),
    ("START", OptOutType::Start),
    ("YES", OptOutType::Start),
    ("UNSTOP", OptOutType::Start),
    ("HELP", OptOutType::Help),
    ("INFO", OptOutType::Help),
];

/// The opt event a message body stands for: the whole body, trimmed, must equal a default
/// keyword, ignoring ASCII case ("sToP" yes, "Stop please" no).
pub(crate) fn infer(body: &str) -> Option<OptOutType> {
    let word = body.trim();
    KEYWORDS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(word))
        .map(|&(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_trimmed_body_in_any_case() {
        assert_eq!(infer("  stop "), Some(OptOutType::Stop));
        assert_eq!(infer("sToP"), Some(OptOutType::Stop));
        assert_eq!(infer("\tUnsubscribe\n"), Some(OptOutType::Stop));
        assert_eq!(infer("revoke"), Some(OptOutType::Stop));
        assert_eq!(infer("OptOut"), Some(OptOutType::Stop));
        assert_eq!(infer("yes"), Some(OptOutType::Start));
        assert_eq!(infer("UNSTOP"), Some(OptOutType::Start));
        assert_eq!(infer("Info"), Some(OptOutType::Help));
    }

    #[test]
    fn not_keywords() {
        for body in [
            "OPT OUT",
            "Stop please",
            "stopp",
            "",
            "   ",
            "S T O P",
            "yes!",
        ] {
            assert_eq!(infer(body), None, "{body:?}");
        }
    }
}
