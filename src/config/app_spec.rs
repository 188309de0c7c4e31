//! `APP_MODULE`: which module to import and which callable (or factory call)
//! to serve. Parsed here only for shape; the worker evaluates it.

/// `module:expression`, where expression is a name or a factory call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppSpec {
    /// The dotted module path, e.g. `examples.hello`.
    pub module: String,
    /// What follows the colon: `application` by default, a variable name, or
    /// a call with literal arguments, e.g. `create_app('x', debug=True)`. The
    /// worker checks it with Python's `ast` and never evaluates other code.
    pub expression: String,
}

impl AppSpec {
    /// Parses `module[:expression]`.
    pub fn parse(text: &str) -> Result<AppSpec, String> {
        let (module, expression) = match text.split_once(':') {
            Some((m, e)) => (m.trim(), e.trim()),
            None => (text.trim(), "application"),
        };
        let valid_module = !module.is_empty()
            && module.split('.').all(|part| {
                let mut chars = part.chars();
                matches!(chars.next(), Some(c) if c == '_' || c.is_alphabetic())
                    && chars.all(|c| c == '_' || c.is_alphanumeric())
            });
        if !valid_module {
            return Err(format!("'{text}' is not MODULE:VARIABLE (module name '{module}' is not a dotted Python name)"));
        }
        if expression.is_empty() {
            return Err(format!("'{text}' names no variable after the colon"));
        }
        Ok(AppSpec {
            module: module.to_string(),
            expression: expression.to_string(),
        })
    }
}

impl std::fmt::Display for AppSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.module, self.expression)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_specs_parse() {
        let cases: &[(&str, &str, &str)] = &[
            ("app", "app", "application"),
            ("app:application", "app", "application"),
            ("pkg.sub.mod:app", "pkg.sub.mod", "app"),
            ("_private:_app", "_private", "_app"),
            ("hello_master:application", "hello_master", "application"),
            ("app:create_app()", "app", "create_app()"),
            (
                "app:create_app('x:y', debug=True)",
                "app",
                "create_app('x:y', debug=True)",
            ),
            (" app : application ", "app", "application"),
        ];
        for (text, module, expression) in cases {
            let spec = AppSpec::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (spec.module.as_str(), spec.expression.as_str()),
                (*module, *expression),
                "{text}"
            );
        }
    }

    #[test]
    fn invalid_specs_are_rejected() {
        let cases: &[(&str, &str)] = &[
            ("", "is not MODULE:VARIABLE"),
            (":app", "is not MODULE:VARIABLE"),
            ("1app:app", "is not MODULE:VARIABLE"),
            ("pkg..mod:app", "is not MODULE:VARIABLE"),
            ("pkg.:app", "is not MODULE:VARIABLE"),
            ("my-app:app", "is not MODULE:VARIABLE"),
            ("app:", "names no variable"),
            ("app: ", "names no variable"),
        ];
        for (text, reason) in cases {
            let message = AppSpec::parse(text).expect_err(text);
            assert!(message.contains(reason), "{text:?}: {message}");
        }
    }

    #[test]
    fn display_round_trips() {
        assert_eq!(AppSpec::parse("a.b:c").unwrap().to_string(), "a.b:c");
        assert_eq!(AppSpec::parse("a").unwrap().to_string(), "a:application");
    }
}
