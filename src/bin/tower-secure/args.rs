// The arguments of one subcommand: positionals, options with a value (`--name value` or
// `--name=value`, repeatable) and switches, in any order; `--help`/`-h` asks for the
// subcommand's help.

/// Why a subcommand stops before running: help was asked for (printed, exit 0), or the
/// arguments are wrong (printed with the help, exit 2).
pub(crate) enum Stop {
    Help(String),
    Usage(String),
}

pub(crate) struct Args {
    positional: Vec<String>,
    options: Vec<(&'static str, String)>,
    switches: Vec<&'static str>,
}

impl Args {
    /// Parses `args` for a subcommand whose options (taking a value) and switches are
    /// listed; anything else starting with `-` is a usage error that shows `help`.
    pub(crate) fn parse(
        args: Vec<String>,
        help: &str,
        options: &[&'static str],
        switches: &[&'static str],
    ) -> Result<Self, Stop> {
        let usage = |problem: String| Stop::Usage(format!("{problem}\n\n{help}"));
        let mut parsed = Self { positional: Vec::new(), options: Vec::new(), switches: Vec::new() };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--help" || arg == "-h" {
                return Err(Stop::Help(help.to_owned()));
            }
            if !arg.starts_with('-') || arg == "-" {
                parsed.positional.push(arg);
                continue;
            }
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (arg.as_str(), None),
            };
            if let Some(switch) = switches.iter().find(|s| **s == name) {
                if inline.is_some() {
                    return Err(usage(format!("{name} takes no value")));
                }
                parsed.switches.push(switch);
            } else if let Some(option) = options.iter().find(|o| **o == name) {
                let value = inline.or_else(|| args.next()).ok_or_else(|| usage(format!("{name} needs a value")))?;
                parsed.options.push((option, value));
            } else {
                return Err(usage(format!("unknown option `{name}`")));
            }
        }
        Ok(parsed)
    }

    /// True when the switch was given.
    pub(crate) fn switch(&self, name: &str) -> bool {
        self.switches.contains(&name)
    }

    /// The value of an option given at most once.
    pub(crate) fn option(&self, name: &'static str) -> Result<Option<&str>, Stop> {
        let mut values = self.options(name);
        let first = values.next();
        match values.next() {
            Some(_) => Err(Stop::Usage(format!("{name} is given twice"))),
            None => Ok(first),
        }
    }

    /// Every value of a repeatable option, in order.
    pub(crate) fn options(&self, name: &'static str) -> impl Iterator<Item = &str> {
        self.options.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The positional arguments; a usage error (with `help`) unless there are between
    /// `min` and `max` of them.
    pub(crate) fn positional(&self, min: usize, max: usize, help: &str) -> Result<&[String], Stop> {
        let count = self.positional.len();
        if count < min || count > max {
            let expected = if min == max { format!("{min}") } else { format!("{min} to {max}") };
            return Err(Stop::Usage(format!("expected {expected} argument(s), got {count}\n\n{help}")));
        }
        Ok(&self.positional)
    }
}
