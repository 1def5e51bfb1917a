# The seed's "changing the current process to daemon while running" example, unchanged.
from multiprocessing import current_process
process = current_process()
print(f'Daemon process: {process.daemon}')
process.daemon = True
print(f'Daemon process: {process.daemon}')
