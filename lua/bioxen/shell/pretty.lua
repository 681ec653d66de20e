-- The pretty printer under its documented name (docs/extending.md); it lives with the
-- runner (bioxen.runner.pretty) because the agent prints an attached REPL's values with it.
return require("bioxen.runner.pretty")
