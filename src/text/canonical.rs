// SPDX-License-Identifier: MPL-2.0
//! The text canonicalisation RADIO applies before SigLIP2's tokenizer.

/// `canonicalize_text` of NVlabs/RADIO
/// [`radio/siglip2_adaptor.py`](https://github.com/NVlabs/RADIO/blob/c0f37017930e9dda53f93424cf4bf39fc51f287e/radio/siglip2_adaptor.py)
/// (from big_vision): `_` becomes a space, ASCII punctuation (Python's
/// `string.punctuation`) is removed, the text is lowercased, and runs of whitespace
/// become one space with none at either end.
pub fn canonicalize(text: &str) -> String {
    let kept: String = text
        .replace('_', " ")
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    kept.to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::canonicalize;

    #[test]
    fn punctuation_case_underscores_and_spaces() {
        assert_eq!(
            canonicalize("A photo of a RED car!"),
            "a photo of a red car"
        );
        assert_eq!(
            canonicalize("  two   dogs_playing, in the snow.  "),
            "two dogs playing in the snow"
        );
        assert_eq!(canonicalize("?!..."), "");
        assert_eq!(canonicalize("Ünïcode\tstays—here"), "ünïcode stays—here");
    }
}
