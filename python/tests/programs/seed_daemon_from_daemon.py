# The seed's "creating a daemon process from a daemon process", with daemonic's start method.
import daemonic  # noqa: F401
from time import sleep
from multiprocessing import current_process, set_start_method
from multiprocessing import Process
# function to be executed by second daemon process
def task2():
    # get the current process
    process = current_process()
    # report if daemon process
    print(f'Daemon process 2: {process.daemon}')
# function to be executed in a new process
def task():
    # get the current process
    process = current_process()
    # report if daemon process
    print(f'Daemon process 1: {process.daemon}')
    # create a new process
    new_process = Process(target=task2)
    # start the new process
    new_process.start()
# entry point
if __name__ == '__main__':
    set_start_method("daemonic")
    # create a new daemon process
    process = Process(target=task, daemon=True)
    # start the new process
    process.start()
    # block for a moment to let the daemon process run
    process.join()
