import sys

from .cli import exit_process, main
from .startup import INFERENCE_COMMANDS, command_of, prepare_command

prepare_command(sys.argv[1:])
exit_process(main(), skip_teardown=command_of(sys.argv[1:]) in INFERENCE_COMMANDS)
