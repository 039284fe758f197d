//! Mattermost text → Matrix message content: Markdown rendered to the HTML Matrix clients show
//! (`formatted_body`), `@username` mentions as pills, `:short_name:` emoji as Unicode (custom
//! emoji as inline images), and an empty `m.mentions` so imported history notifies nobody.

use std::collections::HashMap;

use pulldown_cmark::{html, CowStr, Event, Options, Parser, Tag, TagEnd};
use serde_json::{json, Value};

/// What conversion needs to know about the workspace.
#[derive(Debug, Default)]
pub struct Converter {
    /// Mattermost username → (Matrix user id, display name).
    pub users: HashMap<String, (String, String)>,
    /// Custom emoji name → `mxc://` URI.
    pub custom_emoji: HashMap<String, String>,
}

impl Converter {
    /// Content of an `m.room.message` for a post's text (`m.emote` for `/me` posts, `m.notice`
    /// for system messages).
    pub fn message(&self, text: &str, msgtype: &str) -> Value {
        let body = self.plain(text);
        let mut content = json!({ "msgtype": msgtype, "body": body, "m.mentions": {} });
        let html = self.html(text);
        if html != format!("<p>{}</p>", escape(&body)) {
            content["format"] = json!("org.matrix.custom.html");
            content["formatted_body"] = json!(html);
        }
        content
    }

    /// The plain body: the Markdown source with emoji short names replaced.
    pub fn plain(&self, text: &str) -> String {
        // Custom emoji stay `:name:` in plain text.
        replace_shortcodes(text, |name| {
            let custom = self.custom_emoji.contains_key(name);
            (!custom)
                .then(|| system_emoji(name))
                .flatten()
                .map(str::to_owned)
        })
    }

    /// The HTML rendering (hard line breaks, as Mattermost shows them).
    pub fn html(&self, text: &str) -> String {
        let mut options = Options::empty();
        options.insert(Options::ENABLE_TABLES);
        options.insert(Options::ENABLE_STRIKETHROUGH);
        options.insert(Options::ENABLE_TASKLISTS);
        let mut in_code = 0usize;
        let mut in_link = 0usize;
        let mut events = Vec::new();
        for ev in Parser::new_ext(text, options) {
            match ev {
                Event::Start(Tag::CodeBlock(_)) => {
                    in_code += 1;
                    events.push(ev);
                }
                Event::End(TagEnd::CodeBlock) => {
                    in_code = in_code.saturating_sub(1);
                    events.push(ev);
                }
                // External images cannot be shown (Matrix allows only mxc://): a link instead.
                Event::Start(Tag::Image {
                    dest_url, title, ..
                }) => {
                    in_link += 1;
                    events.push(Event::Start(Tag::Link {
                        link_type: pulldown_cmark::LinkType::Inline,
                        dest_url,
                        title,
                        id: CowStr::Borrowed(""),
                    }));
                }
                Event::End(TagEnd::Image) => {
                    in_link = in_link.saturating_sub(1);
                    events.push(Event::End(TagEnd::Link));
                }
                Event::Start(Tag::Link { .. }) => {
                    in_link += 1;
                    events.push(ev);
                }
                Event::End(TagEnd::Link) => {
                    in_link = in_link.saturating_sub(1);
                    events.push(ev);
                }
                Event::SoftBreak => events.push(Event::HardBreak),
                // Mattermost shows raw HTML as text.
                Event::Html(h) | Event::InlineHtml(h) => events.push(Event::Text(h)),
                Event::Text(t) if in_code == 0 && in_link == 0 => {
                    events.push(Event::Html(self.decorate(&t).into()));
                }
                other => events.push(other),
            }
        }
        let mut out = String::new();
        html::push_html(&mut out, events.into_iter());
        out.trim_end().to_owned()
    }

    /// Escapes text and turns mentions into pills and short names into emoji.
    fn decorate(&self, text: &str) -> String {
        let with_emoji = replace_shortcodes(&escape(text), |name| {
            if let Some(u) = unicode_emoji(name) {
                return Some(u.to_owned());
            }
            let custom = self.custom_emoji.get(name).map(|mxc| {
                format!(
                    "<img data-mx-emoticon src=\"{mxc}\" alt=\":{name}:\" title=\":{name}:\" height=\"32\">"
                )
            });
            custom.or_else(|| system_emoji(name).map(str::to_owned))
        });
        self.pills(&with_emoji)
    }

    /// `@username` → `<a href="https://matrix.to/#/@user:S">Display Name</a>`; Mattermost strips
    /// trailing `.`, `-`, `_` until a username matches.
    fn pills(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find('@') {
            let before = &rest[..at];
            let boundary = before
                .chars()
                .last()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
            out.push_str(before);
            let tail = &rest[at + 1..];
            let len = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || "._-:".contains(c)))
                .unwrap_or(tail.len());
            let mut name = &tail[..len];
            let mut found = None;
            while boundary && !name.is_empty() {
                if let Some(u) = self.users.get(&name.to_lowercase()) {
                    found = Some(u);
                    break;
                }
                match name.strip_suffix(['.', '-', '_']) {
                    Some(n) => name = n,
                    None => break,
                }
            }
            match found {
                Some((user_id, display)) => {
                    out.push_str(&format!(
                        "<a href=\"https://matrix.to/#/{user_id}\">{}</a>",
                        escape(display)
                    ));
                    rest = &tail[name.len()..];
                }
                None => {
                    out.push('@');
                    rest = tail;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// A reaction's key: the emoji itself, or `:name:` for custom emoji.
    pub fn reaction_key(&self, name: &str) -> String {
        let system = match self.custom_emoji.contains_key(name) {
            true => unicode_emoji(name),
            false => system_emoji(name),
        };
        system
            .map(str::to_owned)
            .unwrap_or_else(|| format!(":{name}:"))
    }
}

/// A Mattermost system emoji name (`+1`, `thumbsup`, `thinking_face`, `+1_light_skin_tone`)
/// as Unicode, from Mattermost's own names ([`super::emoji_table`]; gemoji's differ:
/// `thinking` there is `thinking_face` here).
pub fn unicode_emoji(name: &str) -> Option<&'static str> {
    let table = super::emoji_table::EMOJI;
    let at = table.binary_search_by(|(n, _)| n.as_bytes().cmp(name.as_bytes()));
    at.ok().map(|i| table[i].1)
}

/// [`unicode_emoji`], else gemoji's name: Mattermost's table adds gemoji's aliases (`thinking`
/// for `thinking_face`, `hugs`) to emoji-datasource's names.
fn system_emoji(name: &str) -> Option<&'static str> {
    unicode_emoji(name).or_else(|| emojis::get_by_shortcode(name).map(|e| e.as_str()))
}

/// Replaces `:name:` where `f` knows the name.
fn replace_shortcodes(text: &str, f: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(':') {
        out.push_str(&rest[..start]);
        let tail = &rest[start + 1..];
        let len = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || "_+-".contains(c)))
            .unwrap_or(tail.len());
        if len > 0 && tail[len..].starts_with(':') {
            if let Some(rep) = f(&tail[..len]) {
                out.push_str(&rep);
                rest = &tail[len + 1..];
                continue;
            }
        }
        out.push(':');
        rest = tail;
    }
    out.push_str(rest);
    out
}

fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            _ => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv() -> Converter {
        let mut c = Converter::default();
        c.users
            .insert("alice".into(), ("@alice:s.test".into(), "Alice A".into()));
        c.custom_emoji
            .insert("shipit".into(), "mxc://s.test/shipit".into());
        c
    }

    #[test]
    fn plain_text_has_no_html() {
        let c = conv().message("hello there", "m.text");
        assert_eq!(c["body"], "hello there");
        assert!(c.get("formatted_body").is_none());
        assert_eq!(c["m.mentions"], json!({}));
    }

    #[test]
    fn markdown_mentions_emoji_and_breaks() {
        let c = conv().message("**bold** hi @alice. :+1: :shipit:\nnext `@alice`", "m.text");
        let html = c["formatted_body"].as_str().unwrap();
        assert!(html.contains("<strong>bold</strong>"), "{html}");
        assert!(
            html.contains("<a href=\"https://matrix.to/#/@alice:s.test\">Alice A</a>."),
            "{html}"
        );
        assert!(html.contains("👍"), "{html}");
        assert!(html.contains("data-mx-emoticon src=\"mxc://s.test/shipit\""));
        assert!(html.contains("<br />"), "{html}");
        // Code is left alone.
        assert!(html.contains("<code>@alice</code>"), "{html}");
        assert_eq!(c["body"], "**bold** hi @alice. 👍 :shipit:\nnext `@alice`");
    }

    #[test]
    fn raw_html_is_shown_as_text_and_images_become_links() {
        let html = conv().html("<b>x</b> ![logo](https://e.test/l.png)");
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"), "{html}");
        assert!(
            html.contains("<a href=\"https://e.test/l.png\">logo</a>"),
            "{html}"
        );
        assert!(!html.contains("<img"));
    }

    #[test]
    fn reaction_names() {
        let c = conv();
        assert_eq!(c.reaction_key("+1"), "👍");
        assert_eq!(c.reaction_key("thumbsup"), "👍");
        assert_eq!(c.reaction_key("+1_light_skin_tone"), "👍🏻");
        assert_eq!(c.reaction_key("+1_medium_light_skin_tone"), "👍🏼");
        assert_eq!(c.reaction_key("+1_medium_dark_skin_tone"), "👍🏾");
        assert_eq!(c.reaction_key("white_check_mark"), "✅");
        assert_eq!(c.reaction_key("shipit"), ":shipit:");
        assert!(unicode_emoji("heart").is_some());
    }

    /// Mattermost's names, not gemoji's: these were left as `:name:` text.
    #[test]
    fn mattermost_emoji_names() {
        let c = conv();
        for (name, want) in [
            ("thinking_face", "🤔"),
            ("slightly_smiling_face", "🙂"),
            ("upside_down_face", "🙃"),
            ("flag-de", "🇩🇪"),
            ("man-woman-boy", "👨\u{200d}👩\u{200d}👦"),
            ("thumbsup_dark_skin_tone", "👍🏿"),
            ("wave_medium_skin_tone", "👋🏽"),
        ] {
            assert_eq!(c.reaction_key(name), want, "{name}");
        }
        let m = c.message("hmm :thinking_face: :slightly_smiling_face:", "m.text");
        assert_eq!(m["body"], "hmm 🤔 🙂");
        // gemoji's aliases, which Mattermost's table has too.
        assert_eq!(c.reaction_key("thinking"), "🤔");
        assert_eq!(c.reaction_key("hugs"), "🤗");
        // Unknown names and custom emoji keep their name.
        assert_eq!(c.reaction_key("no_such_emoji"), ":no_such_emoji:");
        assert_eq!(unicode_emoji(""), None);
        // The table is sorted, so the binary search finds every name.
        let t = super::super::emoji_table::EMOJI;
        assert!(t.windows(2).all(|w| w[0].0.as_bytes() < w[1].0.as_bytes()));
        assert!(t.len() > 3000, "{}", t.len());
    }
}
