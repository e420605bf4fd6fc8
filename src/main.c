/* linfold: MPI set-up around the command line. */
#include <hdf5.h>
#include <mpi.h>

#include "linfold/blas.h"
#include "linfold/cli.h"
#include "linfold/error.h"
#include "linfold/h5io.h"
#include "linfold/interrupt.h"

int main(int argc, char **argv)
{
    /* Before MPI_Init: it may re-execute this program with a better BLAS kernel. */
    lf_blas_select_kernel(argv);
    MPI_Init(&argc, &argv);
    MPI_Comm comm = MPI_COMM_NULL;
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    lf_error_set_rank(rank, size);
    lf_h5io_init();
    lf_interrupt_install();
    int status = lf_cli_main(comm, argc, argv);
    /* HDF5 closes what is still open (nothing, on every path we know of) while MPI-IO is alive. */
    H5close();
    MPI_Comm_free(&comm);
    MPI_Finalize();
    return status;
}
