// cli.h: what the subcommand files of the command line share.
#ifndef LORAMPI_CLI_H
#define LORAMPI_CLI_H

// Prints "lorampi: <fmt with arg>" and the --help hint on rank 0; returns LMP_EXIT_USAGE.
int lmp_usage_error(const char *fmt, const char *arg);

// `lorampi plot METRICS.jsonl [MORE.jsonl ...] --out PNG` (plot.c).
int lmp_cmd_plot(int argc, char **argv);

#endif
