// The C++ wrapper from an *installed* bgjob (find_package(bgjob) in tests/install/cmake):
// prints the same line as hello.c, so run.sh checks both the same way.
#include <bgjob.hpp>

#include <chrono>
#include <cstring>
#include <iostream>

int main() {
    using namespace std::chrono_literals;
    if (std::strcmp(bgjob_version(), BGJOB_VERSION_STRING) != 0) {
        std::cerr << "hello_cpp: header " << BGJOB_VERSION_STRING << ", library " << bgjob_version() << "\n";
        return 1;
    }
    bgjob::Job job = bgjob::start([](bgjob::Context& ctx) { ctx.write("42"); });
    if (!job.wait(10s)) return 1;
    auto records = job.receive();
    std::cout << "bgjob " << bgjob_version() << ": job " << job.state() << ", output "
              << (records.size() == 1 ? records[0].data : std::string("(none)")) << "\n";
    job.remove();
    bgjob::shutdown(10s);
}
