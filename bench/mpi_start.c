/* MPI's own start-up and shut-down cost: MPI_Init and MPI_Finalize with nothing between, for
 * bench/whole_process.sh to set beside a whole linfold run. */
#include <mpi.h>

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Finalize();
    return 0;
}
