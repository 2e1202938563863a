//! Normalisation of a message body into sentences of canonical tokens.
//!
//! The steps, in order (the prefilter in `prefilter.rs` mirrors the first four exactly, which is
//! what makes it sound):
//! 1. each character is lower-cased (Unicode `to_lowercase`, not full case folding: `ſ` stays
//!    `ſ`), and full-width letters and digits (`ＳＴＯＰ`) become ASCII;
//! 2. apostrophes (`'`, `’`, `‘`, `ʼ`, `` ` ``, `´`) vanish, so "don't" is "dont";
//! 3. letters and digits make tokens; `. ! ? , ; :`, line breaks and any other non-ASCII symbol
//!    (emoji included) end a sentence; everything else (spaces, `-`, `/`, quotes…) ends a token;
//! 4. runs of one repeated character in a token are squeezed to one ("stoooop" → "stop"; so
//!    "all" is "al" internally, for rules and messages alike);
//! 5. a message made only of single letters ("S T O P") becomes one token;
//! 6. common misspellings and short forms map to one canonical spelling ("pls" → "please",
//!    "unsubcribe" → "unsubscribe", "txt" → "text", "optout" → "opt out"), see [`SPELLINGS`];
//! 7. "do not" becomes "dont", and a token repeated at once is kept once ("stop stop stop").

use std::sync::LazyLock;

/// Apostrophes: removed without splitting the word.
pub(super) fn is_apostrophe(c: char) -> bool {
    matches!(
        c,
        '\'' | '`' | '\u{2019}' | '\u{2018}' | '\u{2bc}' | '\u{b4}'
    )
}

/// Characters that end a sentence (besides any non-ASCII symbol).
fn ends_sentence(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | ',' | ';' | ':' | '\n' | '\r')
        || (!c.is_ascii() && !c.is_whitespace())
}

/// Step 1 for one character: calls `out` with each character it folds to.
#[inline]
pub(super) fn fold(c: char, mut out: impl FnMut(char)) {
    if c.is_ascii() {
        out(c.to_ascii_lowercase());
    } else if matches!(c, '\u{ff10}'..='\u{ff19}' | '\u{ff21}'..='\u{ff3a}' | '\u{ff41}'..='\u{ff5a}')
    {
        let ascii = char::from_u32(u32::from(c) - 0xfee0).unwrap_or(c);
        out(ascii.to_ascii_lowercase());
    } else {
        c.to_lowercase().for_each(out);
    }
}

/// Misspellings and short forms (in squeezed form) and what they stand for.
pub(super) const SPELLINGS: &[(&str, &str)] = &[
    ("pls", "please"),
    ("plz", "please"),
    ("plse", "please"),
    ("plez", "please"),
    ("pleas", "please"),
    ("pleaz", "please"),
    ("thx", "thanks"),
    ("thanx", "thanks"),
    ("tnx", "thanks"),
    ("thankyou", "thank you"),
    ("u", "you"),
    ("ur", "your"),
    ("txt", "text"),
    ("tx", "text"),
    ("txts", "texts"),
    ("txs", "texts"),
    ("txting", "texting"),
    ("textin", "texting"),
    ("txtin", "texting"),
    ("texing", "texting"),
    ("msg", "message"),
    ("msgs", "messages"),
    ("mesg", "message"),
    ("mesgs", "messages"),
    ("msging", "messaging"),
    ("unsubcribe", "unsubscribe"),
    ("unsubscibe", "unsubscribe"),
    ("unsuscribe", "unsubscribe"),
    ("unsubscrib", "unsubscribe"),
    ("unsubscrbe", "unsubscribe"),
    ("unsubsribe", "unsubscribe"),
    ("unsubscirbe", "unsubscribe"),
    ("unsubsrcibe", "unsubscribe"),
    ("unscribe", "unsubscribe"),
    ("unsub", "unsubscribe"),
    ("dnt", "dont"),
    ("donot", "dont"),
    ("optout", "opt out"),
    ("stopall", "stop all"),
    ("wanna", "want to"),
    ("wana", "want to"),
    ("anymore", "any more"),
    ("nomore", "no more"),
    ("im", "i am"),
    ("numbr", "number"),
    ("nmbr", "number"),
    ("removeme", "remove me"),
];

/// Step 4: squeezes runs of one repeated character.
pub(super) fn squeeze(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut last = None;
    for c in word.chars() {
        if last != Some(c) {
            out.push(c);
        }
        last = Some(c);
    }
    out
}

/// Steps 1-4: the raw sentences of `body`, each a list of squeezed tokens.
fn raw_sentences(body: &str) -> Vec<Vec<String>> {
    let mut sentences = vec![Vec::new()];
    let mut token = String::new();
    let mut last: Option<char> = None;
    let end_token = |token: &mut String, sentences: &mut Vec<Vec<String>>| {
        if let Some(s) = sentences.last_mut().filter(|_| !token.is_empty()) {
            s.push(std::mem::take(token));
        }
    };
    for c in body.chars() {
        fold(c, |f| {
            if is_apostrophe(f) {
                return;
            }
            if f.is_alphanumeric() {
                if last != Some(f) {
                    token.push(f);
                }
                last = Some(f);
                return;
            }
            last = None;
            end_token(&mut token, &mut sentences);
            if ends_sentence(f) && sentences.last().is_some_and(|s| !s.is_empty()) {
                sentences.push(Vec::new());
            }
        });
    }
    end_token(&mut token, &mut sentences);
    sentences.retain(|s| !s.is_empty());
    sentences
}

/// [`SPELLINGS`] with keys and values squeezed, as tokens are compared.
pub(super) fn spelled() -> &'static [(String, Vec<String>)] {
    static SPELLED: LazyLock<Vec<(String, Vec<String>)>> = LazyLock::new(|| {
        SPELLINGS
            .iter()
            .map(|(k, v)| (squeeze(k), v.split(' ').map(squeeze).collect()))
            .collect()
    });
    &SPELLED
}

/// Maps one squeezed token through [`SPELLINGS`] into `out`.
fn spell(token: String, out: &mut Vec<String>) {
    match spelled().iter().find(|(k, _)| *k == token) {
        Some((_, v)) => out.extend(v.iter().cloned()),
        None => out.push(token),
    }
}

/// A body as sentences of canonical tokens (all steps).
pub(super) fn sentences(body: &str) -> Vec<Vec<String>> {
    let mut raw = raw_sentences(body);
    let single_letters = raw.iter().flatten().count() >= 2
        && raw.iter().flatten().all(|t| t.chars().nth(1).is_none());
    if single_letters {
        let joined: String = raw.iter().flatten().map(String::as_str).collect();
        raw = vec![vec![squeeze(&joined)]];
    }
    raw.into_iter()
        .map(|sentence| {
            let mut spelled = Vec::with_capacity(sentence.len());
            for t in sentence {
                spell(t, &mut spelled);
            }
            let mut out: Vec<String> = Vec::with_capacity(spelled.len());
            for t in spelled {
                if t == "not" && out.last().is_some_and(|p| p == "do") {
                    out.pop();
                    out.push("dont".to_owned());
                } else if out.last() != Some(&t) {
                    out.push(t);
                }
            }
            out
        })
        .collect()
}

/// One word of a rule pattern or word list in canonical form (may be several tokens:
/// "optout" is "opt out").
pub(super) fn word(w: &str) -> Vec<String> {
    sentences(w).into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(body: &str) -> Vec<Vec<String>> {
        sentences(body)
    }

    #[test]
    fn folds_squeezes_and_splits() {
        assert_eq!(flat("STOOOOP!!!"), vec![vec!["stop"]]);
        assert_eq!(flat("Don’t text me"), vec![vec!["dont", "text", "me"]]);
        assert_eq!(
            flat("do not TXT me pls"),
            vec![vec!["dont", "text", "me", "please"]]
        );
        assert_eq!(flat("ＳＴＯＰ"), vec![vec!["stop"]]);
        assert_eq!(flat("S T O P"), vec![vec!["stop"]]);
        assert_eq!(flat("stop stop stop"), vec![vec!["stop"]]);
        assert_eq!(
            flat("Stop 🛑 who is this"),
            vec![vec!["stop"], vec!["who", "is", "this"]]
        );
        assert_eq!(flat("non-stop deals"), vec![vec!["non", "stop", "deals"]]);
        assert_eq!(flat("optout"), vec![vec!["opt", "out"]]);
        assert_eq!(flat("unsubcribe"), vec![vec!["unsubscribe"]]);
        assert_eq!(flat("stop all"), vec![vec!["stop", "al"]]);
        assert!(flat(" ,,, 😀 ").is_empty());
    }
}
