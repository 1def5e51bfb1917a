# The seed's "daemon process terminated abruptly" example (Python multiprocessing), condensed.
from time import sleep
from multiprocessing import current_process, Process

def task():
    print(f'Daemon process: {current_process().daemon}', flush=True)
    for i in range(1000):
        print(i, flush=True)
        sleep(0.1)

if __name__ == '__main__':
    process = Process(target=task, daemon=True)
    process.start()
    sleep(3)
    print('Main process exiting...')
