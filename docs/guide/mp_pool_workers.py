# CPython's pool workers are daemon processes.
from multiprocessing import Pool, current_process

def is_daemon(_):
    return current_process().daemon

if __name__ == '__main__':
    with Pool(3) as pool:
        print(f'workers are daemons: {pool.map(is_daemon, range(3))}')
