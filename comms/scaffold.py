"""``comms init DIR``: a working programme in one command, from the files in ``scaffold/``.

Three example people, an awareness campaign with its layout and text twins, a sending policy,
a ``comms.toml`` with every setting commented out, a ``.gitignore`` for what comms keeps beside
the files, and a CI workflow and a pre-commit hook that run ``comms validate``.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from .errors import ConfigError

FILES = Path(__file__).with_name("scaffold")
DOT = "dot-"  # package data holds no dotfiles (setuptools' globs skip them): dot-X is written .X
CAMPAIGN, FIRST_STEP = "awareness", "launch"


def files() -> list[tuple[Path, Path]]:
    """Each starter file: (its source in the package, where it goes in the programme)."""
    found = []
    for source in sorted(p for p in FILES.rglob("*") if p.is_file()):
        parts = source.relative_to(FILES).parts
        found.append((source, Path(*(f".{p[len(DOT):]}" if p.startswith(DOT) else p
                                     for p in parts))))
    return found


def create(folder: Path, *, force: bool = False) -> list[Path]:
    """Write the starter programme into ``folder`` (made if missing) and return the files written,
    relative to it. A folder that holds anything is refused unless ``force``; then files of the
    same names are replaced, and the rest are left as they are."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError("is a file: give a folder to create the programme in", path=folder)
    if folder.is_dir() and not force and any(folder.iterdir()):
        raise ConfigError("is not empty: pass --force to write the starter programme into it "
                          "(files of the same names are replaced)", path=folder)
    written = []
    for source, target in files():
        path = folder / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(source.read_bytes())
        written.append(target)
    return written


def next_commands(folder: Path) -> list[str]:
    """The three commands to run next, as they work from the current folder."""
    here = folder.resolve() == Path.cwd().resolve()
    project = "" if here else f" --project {shlex.quote(str(folder))}"
    return [f"comms validate{project}", f"comms send {CAMPAIGN} --step {FIRST_STEP}{project}",
            f"comms status{project}"]


@click.command(epilog="""\b
Example:
  comms init nmdi-2027
  comms validate --project nmdi-2027
  comms send awareness --step launch --project nmdi-2027""")
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True,
              help="Write into a folder that is not empty (files of the same names are replaced).")
def init(folder: Path, force: bool) -> None:
    """Create a working programme in DIR: three example people, an awareness campaign, a
    sending policy, a commented comms.toml, a .gitignore, and CI and pre-commit checks that run
    `comms validate`."""
    from .cli import Failure  # the shell this command is registered in; loaded by then

    try:
        written = create(folder, force=force)
    except ConfigError as exc:
        raise Failure(exc.location_message(), 2) from None
    except OSError as exc:
        where = exc.filename or folder
        raise Failure(f"error: cannot write {where}: {exc.strerror or exc}", 1) from None
    click.echo(f"created a programme in {folder}: {len(written)} files (3 example people, "
               f"campaign '{CAMPAIGN}', schedule 'uk-working-hours', comms.toml, .gitignore, "
               "CI and pre-commit checks)")
    click.echo("next:")
    for command in next_commands(folder):
        click.echo(f"  {command}")
