//! The examples' command line: `--flag value` pairs, each checked. An unknown flag, a flag
//! without its value or a value that does not parse ends the program with a message naming it,
//! the usage line and exit status 2; `--help` prints the usage and exits with 0.

// Each example uses the parts it needs.
#![allow(dead_code)]

use std::fmt::Display;
use std::str::FromStr;

/// The flags given, consumed one by one by the example.
pub(crate) struct Args {
    program: &'static str,
    usage: &'static str,
    pairs: Vec<(String, String)>,
}

impl Args {
    /// Reads the process's arguments.
    pub(crate) fn parse(program: &'static str, usage: &'static str) -> Args {
        Args::from_iter(program, usage, std::env::args().skip(1))
    }

    /// Reads `arguments` (without the program name).
    pub(crate) fn from_iter(
        program: &'static str,
        usage: &'static str,
        arguments: impl IntoIterator<Item = String>,
    ) -> Args {
        let mut args = Args {
            program,
            usage,
            pairs: Vec::new(),
        };
        let mut arguments = arguments.into_iter();
        while let Some(flag) = arguments.next() {
            if flag == "--help" || flag == "-h" {
                println!("usage: {program} {usage}");
                std::process::exit(0);
            }
            if !flag.starts_with("--") {
                args.fail(format_args!("unexpected argument {flag:?}"));
            }
            // `--flag=value` and `--flag value` both work.
            let (flag, value) = match flag.split_once('=') {
                Some((flag, value)) => (flag.to_string(), value.to_string()),
                None => match arguments.next() {
                    Some(value) => (flag, value),
                    None => args.fail(format_args!("{flag} needs a value")),
                },
            };
            args.pairs.push((flag, value));
        }
        args
    }

    /// The value of `flag` parsed as `T`, or `default` when it is absent.
    pub(crate) fn get<T>(&mut self, flag: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: Display,
    {
        self.get_opt(flag).unwrap_or(default)
    }

    /// The value of `flag` parsed as `T`, if given (the last one wins if given twice).
    pub(crate) fn get_opt<T>(&mut self, flag: &str) -> Option<T>
    where
        T: FromStr,
        T::Err: Display,
    {
        let mut found = None;
        self.pairs.retain(|(name, value)| {
            let hit = name == flag;
            if hit {
                found = Some(value.clone());
            }
            !hit
        });
        let value = found?;
        match value.parse() {
            Ok(parsed) => Some(parsed),
            Err(error) => self.fail(format_args!("{flag} {value:?}: {error}")),
        }
    }

    /// Ends parsing: any flag the example did not ask for is an error.
    pub(crate) fn finish(self) {
        if let Some((flag, _)) = self.pairs.first() {
            self.fail(format_args!("unknown flag {flag}"));
        }
    }

    fn fail(&self, message: impl Display) -> ! {
        eprintln!(
            "{}: {message}\nusage: {} {}",
            self.program, self.program, self.usage
        );
        std::process::exit(2);
    }
}

/// `result`'s value, or the program ends with `program: error` and exit status 1 (a server that
/// could not start).
pub(crate) fn or_exit<T, E: Display>(program: &str, result: Result<T, E>) -> T {
    result.unwrap_or_else(|error| {
        eprintln!("{program}: {error}");
        std::process::exit(1);
    })
}
