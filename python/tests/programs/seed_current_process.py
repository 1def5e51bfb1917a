# The seed's "checking if the current process is a daemon", with daemonic's start method.
import multiprocessing
import daemonic  # noqa: F401  (registers the start method)
from multiprocessing import current_process
multiprocessing.set_start_method("daemonic")
# get the current process
process = current_process()
# report if daemon process
print(f'Daemon process: {process.daemon}')
