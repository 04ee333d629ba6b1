import sys

from .cli import exit_process, main
from .startup import prepare_command

prepare_command(sys.argv[1:])
exit_process(main())
