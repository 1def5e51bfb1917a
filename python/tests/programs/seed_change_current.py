# The seed's "changing the current process to be a daemon process", with daemonic's start method.
import multiprocessing
import daemonic  # noqa: F401
from multiprocessing import current_process
multiprocessing.set_start_method("daemonic")
# get the current process
process = current_process()
# report if daemon process
print(f'Daemon process: {process.daemon}')
# try and change the current process to be a daemon
process.daemon = True
# report if daemon process
print(f'Daemon process: {process.daemon}')
