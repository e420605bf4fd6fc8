/* The command line: subcommands compress, calibrate, eval, predict, inspect.
 *
 * Every rank parses the same argv, so every rank reaches the same verdict on usage errors; the
 * report of a failure is printed once (from the lowest failing rank). Results go to stdout from
 * rank 0; logs and errors go to stderr. */
#ifndef LINFOLD_CLI_H
#define LINFOLD_CLI_H

#include <mpi.h>

/* Runs the command given by argv and returns the process exit status.
 * Collective on comm.
 * Every rank passes the same argv. Returns 0 on success, 2 on a usage error, 1 on any other
 * error. */
int lf_cli_main(MPI_Comm comm, int argc, char **argv);

#endif /* LINFOLD_CLI_H */
