//! [`text_enum!`]: an enum whose values each have exactly one text form, used alike in config
//! files, the database, JSON on the wire and messages. Before it, each enum had three (a
//! `CHOICES` table, an `as_str` with a fallback, serde renames) and they disagreed.

/// Declare an enum with one text per variant. It derives `Debug, Clone, Copy, PartialEq, Eq,
/// Hash` (add more with a `#[derive]` of your own) and gets `CHOICES`, `ALL`, `as_str`,
/// `parse`, `expected`, `Display`, and serde impls that read and write the same text.
///
/// ```
/// shopfloor_core::text_enum! {
///     /// A colour.
///     pub enum Colour {
///         /// The sky's.
///         Blue => "blue",
///         Red => "red",
///     }
/// }
/// assert_eq!(Colour::parse("red"), Some(Colour::Red));
/// assert_eq!(Colour::Blue.to_string(), "blue");
/// assert_eq!(Colour::expected(), "blue, red");
/// ```
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value with its text, in declaration order.
            pub const CHOICES: &'static [(&'static str, $name)] = &[ $( ($text, $name::$variant) ),+ ];

            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant ),+ ];

            /// The one text form: in config files, the database, JSON and messages.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text ),+
                }
            }

            /// The value whose text is `text`.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $( $text => Some($name::$variant), )+
                    _ => None,
                }
            }

            /// The texts, comma-separated, for "expected one of" messages.
            pub fn expected() -> String {
                [$( $text ),+].join(", ")
            }
        }

        impl ::core::fmt::Display for $name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(deserializer)?;
                Self::parse(&text).ok_or_else(|| {
                    <D::Error as ::serde::de::Error>::custom(format!(
                        "unknown {} \"{text}\"; expected one of: {}",
                        stringify!($name),
                        Self::expected()
                    ))
                })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::text_enum! {
        enum Shade {
            Light => "light",
            DarkGrey => "dark-grey",
        }
    }

    #[test]
    fn one_text_form_everywhere() {
        for &shade in Shade::ALL {
            let text = shade.as_str();
            assert_eq!(Shade::parse(text), Some(shade));
            assert_eq!(shade.to_string(), text);
            let json = serde_json::to_value(shade).unwrap();
            assert_eq!(json, serde_json::json!(text));
            assert_eq!(serde_json::from_value::<Shade>(json).unwrap(), shade);
        }
        assert_eq!(Shade::CHOICES[1], ("dark-grey", Shade::DarkGrey));
        // Widths apply, as they do to the text itself: listings line up.
        assert_eq!(format!("[{:<7}]", Shade::Light), "[light  ]");
        let error = serde_json::from_value::<Shade>(serde_json::json!("dark")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown Shade \"dark\"; expected one of: light, dark-grey"
        );
    }
}
