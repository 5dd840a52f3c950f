"""The results database: every published run in one place, so history, trends and "the last good run" can be asked.

Modules: `dburl` (which database, passwords masked), `schema` (the tables), `engine` (connect + migrate, one line
on any fault), `publish` (a run directory ▸ rows, one transaction), `query` (trends, accepted runs),
`changepoints` (ruptures), `page` (the HTML trend page), `lastgood` (`compare --against last-good`), `commands`
(the CLI). Needs the `history` extra; `import benchbed` never imports SQLAlchemy. See docs/history.md.
"""
