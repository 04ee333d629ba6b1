"""``spinebrain <task>``: one subcommand per available task of :mod:`spinebrain.tasks`.

The registry says which tasks exist; each task's ``command`` entry fills its parser. The ``--out``
help states the one output convention (a file for one case, a folder for a batch).
"""

from __future__ import annotations

from ..tasks import Task, available_tasks


def register(subparsers) -> None:
    for task in available_tasks():
        parser = subparsers.add_parser(task.name, help=task.help, description=task.help)
        task.entry("command")(parser)
        describe_out(parser, task)


def add_task_subcommands(parser, entry: str, help_text: str):
    """``spinebrain train|evaluate TASK``: one subcommand per available task that declares ``entry``.

    ``help_text`` may name the task's ``{title}``. Returns the subparsers (room for more subcommands).
    """
    tasks = parser.add_subparsers(title="task", metavar="TASK", dest="task", required=True)
    for task in available_tasks():
        if getattr(task, entry):
            task.entry(entry)(tasks.add_parser(task.name, help=help_text.format(title=task.title)))
    return tasks


def describe_out(parser, task: Task) -> None:
    """Give ``--out`` the registry's wording (the batch arguments are shared by every task)."""
    for action in parser._actions:  # argparse offers no public way to edit an added option's help
        if action.dest == "out":
            action.help, action.metavar = task.out_help, "FILE|FOLDER"
