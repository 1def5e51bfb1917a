# The seed's "checking if a new process is a daemon process", with daemonic's start method.
import daemonic  # noqa: F401
from multiprocessing import current_process, set_start_method
from multiprocessing import Process
# function to be executed in a new process
def task():
    # get the current process
    process = current_process()
    # report if daemon process
    print(f'Daemon process: {process.daemon}')
# entry point
if __name__ == '__main__':
    set_start_method("daemonic")
    # create a new process with a default value for "daemon"
    process = Process(target=task)
    # start the new process
    process.start()
